package accounts

import (
	"net"
	"net/http"
	"strings"
)

// AdminHandler serves the operator's interface (docs/accounts.md §Admin). Serve it only on a loopback
// listener of its own, never the public one. It refuses anything a browser sends (a web page must not be able to drive it through the
// loopback address) and any Host that is not a loopback name (DNS rebinding).
func (a *Accounts) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /admin/stats", func(w http.ResponseWriter, r *http.Request) {
		s := a.dir.Stats()
		rs := a.srv.Stats()
		a.mu.Lock()
		dialogs, tickets := len(a.dialogs), len(a.tickets)
		a.mu.Unlock()
		writeJSON(w, http.StatusOK, map[string]any{
			"accounts": s.Accounts, "disabled": s.Disabled, "with_key": s.WithKey,
			"revoked_tokens": s.RevokedTokens, "pending_challenges": s.PendingChallenges,
			"tracked_login_failures": s.TrackedFailures, "dialogs": dialogs, "ws_tickets": tickets,
			"connections": rs.Conns, "rooms": rs.Rooms,
		})
	})
	mux.HandleFunc("GET /admin/accounts", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("names") != "1" {
			writeError(w, http.StatusBadRequest, "bad_request", "the account list shows user names: ask for it with ?names=1 (counts are at /admin/stats)")
			return
		}
		type row struct {
			Username    string `json:"username"`
			Disabled    bool   `json:"disabled"`
			Fingerprint string `json:"fingerprint,omitempty"`
		}
		list := a.dir.ListAccounts()
		out := make([]row, 0, len(list))
		for _, x := range list {
			out = append(out, row{x.Username, x.Disabled, x.Fingerprint})
		}
		writeJSON(w, http.StatusOK, map[string]any{"accounts": out})
	})
	action := func(do func(string) error) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			var req struct {
				Username string `json:"username"`
			}
			if err := decode(r, &req); err != nil {
				a.fail(w, err)
				return
			}
			if err := do(req.Username); err != nil {
				a.fail(w, err)
				return
			}
			w.WriteHeader(http.StatusNoContent)
		}
	}
	mux.HandleFunc("POST /admin/revoke-key", action(a.dir.RevokeKey))
	mux.HandleFunc("POST /admin/disable", action(a.dir.DisableAccount))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", "no such admin endpoint")
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Origin") != "" || r.Header.Get("Sec-Fetch-Site") != "" || r.Header.Get("Sec-Fetch-Mode") != "" {
			writeError(w, http.StatusForbidden, "browser_refused", "the admin interface does not answer browsers")
			return
		}
		if !loopbackHost(r.Host) {
			writeError(w, http.StatusMisdirectedRequest, "bad_host", "the admin interface answers only loopback host names")
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		r.Body = http.MaxBytesReader(w, r.Body, 4096)
		mux.ServeHTTP(w, r)
	})
}

// loopbackHost accepts localhost and loopback IP literals, with or without a port.
func loopbackHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
