package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// Registration is what an account is registered with (docs/accounts.md §4). Email may be empty.
type Registration struct {
	Username, FullName, Email, Password string
}

// Account is a user registered on a relay, logged in, with a published OpenPGP key: what it takes to open
// dialogs and logged-in WebSocket sessions (docs/accounts.md §5–7).
type Account struct {
	Name      string          // the username as registered
	Session   string          // the session cookie's value: the access token
	Key       *openpgp.Entity // the published key, private half included (NewAccount), or nil (Login)
	PublicKey string          // the published key, armored
	// Sign makes an armored detached signature over text with the account's key, for the proofs of
	// possession. Optional: nil signs with Key.
	Sign func(text string) (string, error)

	base string // http://HOST
	http *http.Client
}

// Dialog is the room the relay keeps for a pair of users (docs/accounts.md §6).
type Dialog struct {
	Room string `json:"room"`
	Cap  string `json:"cap"`
	Peer struct {
		Username string `json:"username"` // the peer's name as the relay normalized it
	} `json:"peer"`
}

// NewAccount registers reg on the relay at relayURL (http://HOST/ or ws://HOST/ws: only the host is used), logs
// in, and publishes a fresh Ed25519 key with its proof of possession. Ed25519 is fast to make and to sign with,
// so callers measure or test the relay's work, not their own RSA. hc makes the requests (e.g. through Tor's
// SOCKS port); nil means a plain http.Client.
func NewAccount(ctx context.Context, relayURL string, reg Registration, hc *http.Client) (*Account, error) {
	u, err := url.Parse(relayURL)
	if err != nil {
		return nil, fmt.Errorf("failed to parse the relay's URL: %w", err)
	}
	if hc == nil {
		hc = &http.Client{}
	}
	a := &Account{Name: reg.Username, base: "http://" + u.Host, http: hc}
	key, err := openpgp.NewEntity(reg.Username, "", reg.Email, &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA, Curve: packet.Curve25519})
	if err != nil {
		return nil, fmt.Errorf("failed to make a key: %w", err)
	}
	a.Key = key
	if _, _, err := a.call(ctx, "POST", "/api/register", map[string]string{"username": reg.Username, "full_name": reg.FullName, "email": reg.Email, "password": reg.Password}); err != nil {
		return nil, err
	}
	_, cookies, err := a.call(ctx, "POST", "/api/login", map[string]string{"username": reg.Username, "password": reg.Password})
	if err != nil {
		return nil, err
	}
	if a.Session = cookies["session"]; a.Session == "" {
		return nil, fmt.Errorf("login set no session cookie")
	}
	ch, err := a.challenge(ctx, "/api/key/challenge")
	if err != nil {
		return nil, err
	}
	var pub bytes.Buffer
	w, err := armor.Encode(&pub, openpgp.PublicKeyType, nil)
	if err != nil {
		return nil, fmt.Errorf("failed to armor the key: %w", err)
	}
	if err := key.Serialize(w); err != nil {
		return nil, fmt.Errorf("failed to serialize the key: %w", err)
	}
	w.Close()
	a.PublicKey = pub.String()
	sig, err := a.sign(ch)
	if err != nil {
		return nil, err
	}
	if _, err := a.Call(ctx, "PUT", "/api/key", map[string]string{"key": a.PublicKey, "challenge": ch, "signature": sig}); err != nil {
		return nil, err
	}
	return a, nil
}

// On returns the account as a client of another relay node of the same cluster (docs/cluster.md), which knows
// the account and accepts its session: the same login and key, requests to relayURL (only its host is used).
func (a *Account) On(relayURL string) (*Account, error) {
	u, err := url.Parse(relayURL)
	if err != nil {
		return nil, fmt.Errorf("failed to parse the relay's URL: %w", err)
	}
	b := *a
	b.base = "http://" + u.Host
	return &b, nil
}

// DirKey is a key as the directory describes it (docs/accounts.md §5).
type DirKey struct {
	Fingerprint string `json:"fingerprint"` // upper-case hex, no spaces
	Algorithm   string `json:"algorithm"`
	Armored     string `json:"armored"`
}

// Me is the logged-in user, and its published key (nil when none).
type Me struct {
	User struct {
		Username string `json:"username"`
		FullName string `json:"full_name"`
		Email    string `json:"email"`
	} `json:"user"`
	Key *DirKey `json:"key"`
}

// ErrBadCredentials is Login's answer for a wrong username or password.
var ErrBadCredentials = errors.New("wrong username or password")

// Login logs in to the relay at base (http://HOST or https://HOST; a path is ignored) and returns the account
// with what the relay knows of it. The account has no key: set Sign (and publish with PublishKey when the
// directory holds another key) before TicketHeader. hc makes the requests; nil means a plain http.Client.
func Login(ctx context.Context, base, username, password string, hc *http.Client) (*Account, *Me, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, nil, fmt.Errorf("failed to parse the relay's URL %q", base)
	}
	if hc == nil {
		hc = &http.Client{}
	}
	a := &Account{Name: username, base: u.Scheme + "://" + u.Host, http: hc}
	_, cookies, err := a.call(ctx, "POST", "/api/login", map[string]string{"username": username, "password": password})
	if err != nil {
		if strings.Contains(err.Error(), `"bad_credentials"`) {
			return nil, nil, ErrBadCredentials
		}
		return nil, nil, err
	}
	if a.Session = cookies["session"]; a.Session == "" {
		return nil, nil, errors.New("login set no session cookie")
	}
	me, err := a.Me(ctx)
	if err != nil {
		return nil, nil, err
	}
	a.Name = me.User.Username
	return a, me, nil
}

// Me asks the relay who is logged in and which key it holds for them.
func (a *Account) Me(ctx context.Context) (*Me, error) {
	body, err := a.Call(ctx, "GET", "/api/me", nil)
	if err != nil {
		return nil, err
	}
	var me Me
	if err := json.Unmarshal(body, &me); err != nil || me.User.Username == "" {
		return nil, fmt.Errorf("the answer of /api/me is not a user: %s", body)
	}
	return &me, nil
}

// PublishKey publishes armored (a public key) as the account's key, with a proof of possession made by Sign.
// It replaces a key published before, which ends the account's other logged-in sessions.
func (a *Account) PublishKey(ctx context.Context, armored string) error {
	ch, err := a.challenge(ctx, "/api/key/challenge")
	if err != nil {
		return err
	}
	sig, err := a.sign(ch)
	if err != nil {
		return err
	}
	if _, err := a.Call(ctx, "PUT", "/api/key", map[string]string{"key": armored, "challenge": ch, "signature": sig}); err != nil {
		return err
	}
	a.PublicKey = armored
	return nil
}

// UserKey returns the directory's key of user name.
func (a *Account) UserKey(ctx context.Context, name string) (*DirKey, error) {
	body, err := a.Call(ctx, "GET", "/api/users/"+url.PathEscape(name)+"/key", nil)
	if err != nil {
		return nil, err
	}
	var r struct {
		Key *DirKey `json:"key"`
	}
	if err := json.Unmarshal(body, &r); err != nil || r.Key == nil || r.Key.Armored == "" {
		return nil, fmt.Errorf("the directory's answer for %s has no key", name)
	}
	return r.Key, nil
}

// TicketHeader proves the key for a new WebSocket ticket and returns the handshake header (Options.Header)
// that carries the login and the ticket. The header opens any number of sessions while one of them is open and
// for the ticket's lifetime after the last one closed (docs/accounts.md §7).
func (a *Account) TicketHeader(ctx context.Context) (http.Header, error) {
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
	h.Set("Cookie", "session="+a.Session+"; ws_ticket="+cookies["ws_ticket"])
	return h, nil
}

// OpenDialog opens (or finds) the dialog room with user peer.
func (a *Account) OpenDialog(ctx context.Context, peer string) (*Dialog, error) {
	body, err := a.Call(ctx, "POST", "/api/dialogs/"+url.PathEscape(peer), nil)
	if err != nil {
		return nil, err
	}
	var d Dialog
	if err := json.Unmarshal(body, &d); err != nil || d.Room == "" || d.Cap == "" {
		return nil, fmt.Errorf("the dialog answer has no room: %s", body)
	}
	return &d, nil
}

// Call makes one API request as this account (body, if not nil, is sent as JSON) and returns the answer's body.
// An answer other than 2xx is an error that carries the status and the relay's error body.
func (a *Account) Call(ctx context.Context, method, path string, body any) ([]byte, error) {
	out, _, err := a.call(ctx, method, path, body)
	return out, err
}

func (a *Account) challenge(ctx context.Context, path string) (string, error) {
	body, err := a.Call(ctx, "POST", path, nil)
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

func (a *Account) sign(text string) (string, error) {
	if a.Sign != nil {
		return a.Sign(text)
	}
	var b bytes.Buffer
	if err := openpgp.ArmoredDetachSign(&b, a.Key, strings.NewReader(text), nil); err != nil {
		return "", fmt.Errorf("failed to sign: %w", err)
	}
	return b.String(), nil
}

// call makes one API request with the session cookie (set by hand: the relay's cookies are Secure, and this is
// plain http on loopback or to an onion) and returns the body and the cookies set. A 503 answer with
// Retry-After (busy: every password-hashing slot is taken, docs/accounts.md §4) is asked again after that wait,
// until ctx ends.
func (a *Account) call(ctx context.Context, method, path string, body any) ([]byte, map[string]string, error) {
	var payload []byte
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, nil, fmt.Errorf("failed to encode the request: %w", err)
		}
		payload = b
	}
	for {
		out, cookies, retry, err := a.callOnce(ctx, method, path, payload)
		if retry == 0 {
			return out, cookies, err
		}
		select {
		case <-time.After(retry):
		case <-ctx.Done():
			return nil, nil, fmt.Errorf("%w (while the relay was busy)", err)
		}
	}
}

// callOnce makes one request; retry is how long to wait before asking again (0: this answer is final).
func (a *Account) callOnce(ctx context.Context, method, path string, payload []byte) (out []byte, cookies map[string]string, retry time.Duration, err error) {
	var rd io.Reader
	if payload != nil {
		rd = bytes.NewReader(payload)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, rd)
	if err != nil {
		return nil, nil, 0, err
	}
	if payload != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if a.Session != "" {
		req.Header.Set("Cookie", "session="+a.Session)
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("failed to call %s: %w", path, err)
	}
	defer resp.Body.Close()
	out, err = io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, nil, 0, fmt.Errorf("failed to read the answer of %s: %w", path, err)
	}
	if resp.StatusCode/100 != 2 {
		err = fmt.Errorf("%s %s: HTTP %d: %s", method, path, resp.StatusCode, bytes.TrimSpace(out))
		if s, e := strconv.Atoi(resp.Header.Get("Retry-After")); e == nil && s > 0 && resp.StatusCode == http.StatusServiceUnavailable {
			retry = time.Duration(s) * time.Second
		}
		return nil, nil, retry, err
	}
	cookies = map[string]string{}
	for _, c := range resp.Cookies() {
		cookies[c.Name] = c.Value
	}
	return out, cookies, 0, nil
}
