package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// MailItem is one message waiting in the relay's mailbox (docs/accounts.md §Mailbox).
type MailItem struct {
	ID      string    `json:"id"`
	Sent    time.Time `json:"sent"`
	Expires time.Time `json:"expires"`
	Data    []byte    `json:"data"`
}

// PutMail leaves payload, a dialog frame payload encrypted to the key with fingerprint fp, for user to in the
// relay's mailbox, for ttl (0: the relay's maximum). It returns the item's id.
func (a *Account) PutMail(ctx context.Context, to, fp string, payload []byte, ttl time.Duration) (string, error) {
	u := a.base + "/api/mailbox/" + url.PathEscape(to) + "?fp=" + url.QueryEscape(fp)
	if ttl > 0 {
		u += "&ttl=" + strconv.Itoa(int(ttl.Seconds()))
	}
	req, err := http.NewRequestWithContext(ctx, "POST", u, bytes.NewReader(payload))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set("Cookie", "session="+a.Session)
	resp, err := a.http.Do(req)
	if err != nil {
		return "", fmt.Errorf("failed to leave a message: %w", err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if err != nil {
		return "", fmt.Errorf("failed to read the answer: %w", err)
	}
	if resp.StatusCode != http.StatusCreated {
		return "", fmt.Errorf("failed to leave a message: HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(out))
	}
	var r struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		return "", fmt.Errorf("failed to read the answer: %w", err)
	}
	return r.ID, nil
}

// FetchMail returns the items from user from waiting for a, oldest first, and whether more wait.
func (a *Account) FetchMail(ctx context.Context, from string) ([]MailItem, bool, error) {
	out, err := a.Call(ctx, "GET", "/api/mailbox/"+url.PathEscape(from), nil)
	if err != nil {
		return nil, false, err
	}
	var r struct {
		Items []MailItem `json:"items"`
		More  bool       `json:"more"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		return nil, false, fmt.Errorf("failed to read the mailbox: %w", err)
	}
	return r.Items, r.More, nil
}

// AckMail removes the items with ids from user from, once a has read them.
func (a *Account) AckMail(ctx context.Context, from string, ids []string) error {
	_, err := a.Call(ctx, "POST", "/api/mailbox/"+url.PathEscape(from)+"/ack", map[string]any{"ids": ids})
	return err
}

// Fingerprint is the account's published key fingerprint, as the directory writes it (upper-case hex).
func (a *Account) Fingerprint() string {
	return fmt.Sprintf("%X", a.Key.PrimaryKey.Fingerprint)
}
