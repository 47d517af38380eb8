package accounts

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/cleanrelay/cleanrelay/keydir"
)

func (a *Accounts) routes() {
	m := a.mux
	m.HandleFunc("POST /api/register", a.register)
	m.HandleFunc("POST /api/login", a.login)
	m.HandleFunc("POST /api/logout", a.logout)
	m.HandleFunc("GET /api/me", a.me)
	m.HandleFunc("POST /api/key/challenge", a.challenge(keydir.PurposePublishKey))
	m.HandleFunc("PUT /api/key", a.putKey)
	m.HandleFunc("GET /api/users/{name}/key", a.userKey)
	m.HandleFunc("GET /api/users", a.search)
	m.HandleFunc("POST /api/dialogs/{name}", a.openDialog)
	m.HandleFunc("POST /api/session/challenge", a.challenge(keydir.PurposeSession))
	m.HandleFunc("POST /api/session/proof", a.sessionProof)
	a.mailboxRoutes()
	a.prekeyRoutes()
	// Everything else: 405 for a known path with another method, else 404, both in the API's JSON form.
	m.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		var allow []string
		for _, method := range []string{"GET", "POST", "PUT"} {
			probe := r.Clone(r.Context())
			probe.Method = method
			if _, pattern := m.Handler(probe); pattern != "/api/" {
				allow = append(allow, method)
			}
		}
		if len(allow) > 0 {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", "use "+strings.Join(allow, " or ")+" here")
			return
		}
		writeError(w, http.StatusNotFound, "not_found", "no such API endpoint")
	})
}

// userJSON is an account as its owner sees it.
type userJSON struct {
	ID       string    `json:"id"`
	Username string    `json:"username"`
	FullName string    `json:"full_name"`
	Email    string    `json:"email,omitempty"`
	Created  time.Time `json:"created,omitzero"`
}

// keyJSON is a published public key.
type keyJSON struct {
	Fingerprint         string    `json:"fingerprint"`
	Version             int       `json:"version"`
	Algorithm           string    `json:"algorithm"`
	Subkeys             []string  `json:"subkeys"`
	UserIDs             []string  `json:"user_ids"`
	Created             time.Time `json:"created"`
	Expires             time.Time `json:"expires,omitzero"`
	Published           time.Time `json:"published"`
	ChangedAt           time.Time `json:"changed_at,omitzero"`
	PreviousFingerprint string    `json:"previous_fingerprint,omitempty"`
	Armored             string    `json:"armored"`
}

func keyView(k *keydir.KeyInfo) *keyJSON {
	if k == nil {
		return nil
	}
	return &keyJSON{Fingerprint: k.Fingerprint, Version: k.Version, Algorithm: k.Algorithm, Subkeys: nonNil(k.Subkeys),
		UserIDs: nonNil(k.UserIDs), Created: k.Created.UTC(), Expires: utc(k.Expires), Published: k.Published.UTC(),
		ChangedAt: utc(k.ChangedAt), PreviousFingerprint: k.PreviousFingerprint, Armored: k.Armored}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func utc(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.UTC()
}

func (a *Accounts) register(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Username string `json:"username"`
		FullName string `json:"full_name"`
		Email    string `json:"email"`
		Password string `json:"password"`
	}
	if err := decode(r, &req); err != nil {
		a.fail(w, err)
		return
	}
	acc, err := a.dir.Register(r.Context(), keydir.Registration{Username: req.Username, FullName: req.FullName,
		Email: req.Email, Password: req.Password})
	if err != nil {
		a.fail(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{"user": userJSON{acc.ID, acc.Username, acc.FullName, acc.Email, acc.Created.UTC()}})
}

func (a *Accounts) login(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Username string `json:"username"`
		Password string `json:"password"`
	}
	if err := decode(r, &req); err != nil {
		a.fail(w, err)
		return
	}
	tok, s, err := a.dir.Login(r.Context(), req.Username, req.Password)
	if err != nil {
		a.fail(w, err)
		return
	}
	setCookie(w, sessionCookie, tok, "/", int(time.Until(s.Expires).Seconds()))
	writeJSON(w, http.StatusOK, map[string]any{
		"user":    userJSON{ID: s.UserID, Username: s.Username, FullName: s.FullName, Email: s.Email},
		"expires": s.Expires.UTC(),
	})
}

// logout revokes the token, if it is valid, ends every socket of that login, and clears the cookies either
// way.
func (a *Accounts) logout(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(sessionCookie); err == nil && c.Value != "" {
		if s, err := a.dir.Authenticate(c.Value); err == nil && a.dir.Logout(c.Value) == nil {
			a.endSession(s.UserID, s.Username, s.TokenID)
		}
	}
	setCookie(w, sessionCookie, "", "/", -1)
	setCookie(w, ticketCookie, "", "/ws", -1)
	w.WriteHeader(http.StatusNoContent)
}

func (a *Accounts) me(w http.ResponseWriter, r *http.Request) {
	s, err := a.session(r)
	if err != nil {
		a.fail(w, err)
		return
	}
	acc, err := a.dir.Account(s.UserID)
	if err != nil {
		a.fail(w, err)
		return
	}
	p, err := a.dir.User(acc.Username)
	if err != nil {
		a.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"user":    userJSON{acc.ID, acc.Username, acc.FullName, acc.Email, acc.Created.UTC()},
		"key":     keyView(p.Key),
		"expires": s.Expires.UTC(),
	})
}

func (a *Accounts) challenge(p keydir.Purpose) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s, err := a.session(r)
		if err != nil {
			a.fail(w, err)
			return
		}
		ch, err := a.dir.IssueChallenge(s.UserID, p)
		if err != nil {
			a.fail(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"challenge": ch})
	}
}

func (a *Accounts) putKey(w http.ResponseWriter, r *http.Request) {
	s, err := a.session(r)
	if err != nil {
		a.fail(w, err)
		return
	}
	var req struct {
		Key       string `json:"key"`
		Challenge string `json:"challenge"`
		Signature string `json:"signature"`
	}
	if err := decode(r, &req); err != nil {
		a.fail(w, err)
		return
	}
	info, err := a.dir.PublishKey(s.UserID, req.Key, req.Challenge, req.Signature)
	if err != nil {
		a.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"key": keyView(&info)})
}

func (a *Accounts) userKey(w http.ResponseWriter, r *http.Request) {
	s, err := a.session(r)
	if err == nil {
		err = a.dir.Allow(s.UserID, keydir.ActionKeyLookup)
	}
	if err != nil {
		a.fail(w, err)
		return
	}
	p, err := a.dir.User(r.PathValue("name"))
	if err != nil {
		a.fail(w, err)
		return
	}
	if p.Disabled {
		a.fail(w, keydir.ErrNotFound)
		return
	}
	if p.Key == nil {
		writeError(w, http.StatusNotFound, "no_key", "this user has not published a key")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"username": p.Username, "full_name": p.FullName, "key": keyView(p.Key)})
}

func (a *Accounts) search(w http.ResponseWriter, r *http.Request) {
	s, err := a.session(r)
	if err != nil {
		a.fail(w, err)
		return
	}
	limit := 0
	if l := r.URL.Query().Get("limit"); l != "" {
		if limit, err = strconv.Atoi(l); err != nil || limit < 1 {
			writeError(w, http.StatusBadRequest, "bad_request", "limit must be a positive number")
			return
		}
	}
	ps, err := a.dir.Search(s.UserID, r.URL.Query().Get("prefix"), limit)
	if err != nil {
		a.fail(w, err)
		return
	}
	type hit struct {
		Username    string `json:"username"`
		FullName    string `json:"full_name"`
		Fingerprint string `json:"fingerprint,omitempty"`
	}
	out := make([]hit, 0, len(ps))
	for _, p := range ps {
		h := hit{Username: p.Username, FullName: p.FullName}
		if p.Key != nil {
			h.Fingerprint = p.Key.Fingerprint
		}
		out = append(out, h)
	}
	writeJSON(w, http.StatusOK, map[string]any{"users": out})
}
