package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// authUser is an account the tool registered on the relay, logged in, with a published key: what it takes to
// open logged-in WebSocket sessions (docs/accounts.md §7).
type authUser struct {
	base    string // http://HOST
	name    string
	session string // the session cookie's value
	key     *openpgp.Entity
	http    *http.Client
}

// benchPassword meets the password policy (upper, lower, digit, special, 8+).
const benchPassword = "Bench-load-1"

// newAuthUser registers name, logs in, and publishes a fresh Ed25519 key (fast to make and to sign with: the
// tool measures the relay's work, not its own RSA).
func newAuthUser(ctx context.Context, wsURL, name string) (*authUser, error) {
	u, err := url.Parse(wsURL)
	if err != nil {
		return nil, err
	}
	a := &authUser{base: "http://" + u.Host, name: name, http: &http.Client{}}
	key, err := openpgp.NewEntity(name, "", name+"@bench.invalid", &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA, Curve: packet.Curve25519})
	if err != nil {
		return nil, fmt.Errorf("failed to make a key: %w", err)
	}
	a.key = key
	if _, _, err := a.call(ctx, "POST", "/api/register", map[string]string{"username": name, "full_name": "Bench " + name, "password": benchPassword}); err != nil {
		return nil, err
	}
	_, cookies, err := a.call(ctx, "POST", "/api/login", map[string]string{"username": name, "password": benchPassword})
	if err != nil {
		return nil, err
	}
	if a.session = cookies["session"]; a.session == "" {
		return nil, fmt.Errorf("login set no session cookie")
	}
	ch, err := a.challenge(ctx, "/api/key/challenge")
	if err != nil {
		return nil, err
	}
	var pub bytes.Buffer
	w, err := armor.Encode(&pub, openpgp.PublicKeyType, nil)
	if err != nil {
		return nil, err
	}
	if err := key.Serialize(w); err != nil {
		return nil, err
	}
	w.Close()
	sig, err := a.sign(ch)
	if err != nil {
		return nil, err
	}
	if _, _, err := a.call(ctx, "PUT", "/api/key", map[string]string{"key": pub.String(), "challenge": ch, "signature": sig}); err != nil {
		return nil, err
	}
	return a, nil
}

// ticketHeader proves the key for a new session and returns the handshake header that carries the login and
// the one-use ticket.
func (a *authUser) ticketHeader(ctx context.Context) (http.Header, error) {
	ch, err := a.challenge(ctx, "/api/session/challenge")
	if err != nil {
		return nil, err
	}
	sig, err := a.sign(ch)
	if err != nil {
		return nil, err
	}
	_, cookies, err := a.call(ctx, "POST", "/api/session/proof", map[string]string{"challenge": ch, "signature": sig})
	if err != nil {
		return nil, err
	}
	if cookies["ws_ticket"] == "" {
		return nil, fmt.Errorf("the session proof set no ticket cookie")
	}
	h := http.Header{}
	h.Set("Cookie", "session="+a.session+"; ws_ticket="+cookies["ws_ticket"])
	return h, nil
}

func (a *authUser) challenge(ctx context.Context, path string) (string, error) {
	body, _, err := a.call(ctx, "POST", path, nil)
	if err != nil {
		return "", err
	}
	var r struct {
		Challenge string `json:"challenge"`
	}
	if json.Unmarshal(body, &r) != nil || r.Challenge == "" {
		return "", fmt.Errorf("%s gave no challenge", path)
	}
	return r.Challenge, nil
}

func (a *authUser) sign(text string) (string, error) {
	var b bytes.Buffer
	if err := openpgp.ArmoredDetachSign(&b, a.key, strings.NewReader(text), nil); err != nil {
		return "", fmt.Errorf("failed to sign: %w", err)
	}
	return b.String(), nil
}

// call makes one API request with the session cookie (set by hand: the relay's cookies are Secure, and this is
// plain http on loopback) and returns the body and the cookies set.
func (a *authUser) call(ctx context.Context, method, path string, body any) ([]byte, map[string]string, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, rd)
	if err != nil {
		return nil, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if a.session != "" {
		req.Header.Set("Cookie", "session="+a.session)
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("failed to call %s: %w", path, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, nil, fmt.Errorf("failed to read the answer of %s: %w", path, err)
	}
	if resp.StatusCode/100 != 2 {
		return nil, nil, fmt.Errorf("%s %s: HTTP %d: %s", method, path, resp.StatusCode, bytes.TrimSpace(out))
	}
	cookies := map[string]string{}
	for _, c := range resp.Cookies() {
		cookies[c.Name] = c.Value
	}
	return out, cookies, nil
}
