package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
)

// Prekey is one of a user's one-time prekeys as the relay hands it out (docs/accounts.md §14).
type Prekey struct {
	ID          uint32 `json:"id"`
	Fingerprint string `json:"fingerprint"` // the key it was published under: the mailbox item's fp
	Prekey      []byte `json:"prekey"`      // the signed prekey (docs/e2e.md §9); check it with the pinned key
}

// PublishPrekeys replaces the account's prekeys at the relay with bundle (docs/e2e.md §9: u16 count ‖ count ×
// (u16 len ‖ prekey)).
func (a *Account) PublishPrekeys(ctx context.Context, bundle []byte) error {
	req, err := http.NewRequestWithContext(ctx, "PUT", a.base+"/api/prekeys", bytes.NewReader(bundle))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set("Cookie", "session="+a.Session)
	resp, err := a.http.Do(req)
	if err != nil {
		return fmt.Errorf("failed to publish prekeys: %w", err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("failed to publish prekeys: HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(out))
	}
	return nil
}

// PrekeysLeft returns the ids of the account's prekeys the relay still holds, and how many it keeps at most.
func (a *Account) PrekeysLeft(ctx context.Context) ([]uint32, int, error) {
	out, err := a.Call(ctx, "GET", "/api/prekeys", nil)
	if err != nil {
		return nil, 0, err
	}
	var r struct {
		IDs []uint32 `json:"ids"`
		Max int      `json:"max"`
	}
	if err := json.Unmarshal(out, &r); err != nil || r.Max <= 0 {
		return nil, 0, fmt.Errorf("the answer of /api/prekeys is not a list of prekeys: %s", out)
	}
	return r.IDs, r.Max, nil
}

// TakePrekey takes one of user's prekeys, for a mailbox item to them; the relay removes it in the same step.
// The error of a user with none left (or with a hold reached) names the relay's code: "no_prekeys",
// "prekeys_held" (docs/accounts.md §14).
func (a *Account) TakePrekey(ctx context.Context, user string) (*Prekey, error) {
	out, err := a.Call(ctx, "POST", "/api/prekeys/"+url.PathEscape(user)+"/take", nil)
	if err != nil {
		return nil, err
	}
	var p Prekey
	if err := json.Unmarshal(out, &p); err != nil || len(p.Prekey) == 0 || p.Fingerprint == "" {
		return nil, fmt.Errorf("the relay's answer is not a prekey: %s", out)
	}
	return &p, nil
}
