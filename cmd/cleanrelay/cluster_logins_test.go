package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"

	"github.com/cleanrelay/cleanrelay/relay/client"
)

// guess is one login attempt on the node at url: its status and Retry-After (seconds, 0 when none).
func guess(t *testing.T, url, user, password string) (int, int) {
	t.Helper()
	code, _, resp := apiCall(t, "POST", url+"api/login", "", fmt.Sprintf(`{"username":%q,"password":%q}`, user, password))
	ra, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
	return code, ra
}

// TestClusterLoginBackoff: failed logins spread over three nodes back the account off exactly as on one node
// (keydir's defaults: 5 free failures, then 1 s doubling). A burst of 15 wrong passwords, 5 on each node at
// once, gets 5 comparisons and 10 refusals, as 15 on one node do (attempts in flight count); two more
// failures, each on another node after the wait, leave a 4 s wait that every node enforces, for the right
// password too; after it, the right password logs in.
func TestClusterLoginBackoff(t *testing.T) {
	// Queued comparisons wait as long as they need (the loaded test machine): a busy answer is neither outcome.
	_, _, a, b, c := threeNodes(t, "--max-hash-wait", "1m")
	nodes := []*clusterNode{a, b, c}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, reg := newUser(ctx, t, a.url, "alice")
	wrong := reg.Password + "-not"

	// The burst: 5 wrong passwords on each node at once.
	codes := map[int]int{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range 15 {
		wg.Go(func() {
			code, _ := guess(t, nodes[i%3].url, reg.Username, wrong)
			mu.Lock()
			codes[code]++
			mu.Unlock()
		})
	}
	wg.Wait()
	t.Logf("15 wrong passwords at once, 5 on each node: %v", codes)
	if codes[http.StatusUnauthorized] != 5 || codes[http.StatusTooManyRequests] != 10 {
		t.Fatalf("15 wrong passwords at once over three nodes: %v, want 5 compared (401) and 10 refused (429), as on one node", codes)
	}

	// Two more failures, each on another node once the wait is over: 6 (2 s) and 7 (4 s).
	for i, n := range []*clusterNode{b, c} {
		var code, ra int
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(time.Duration(ra) * time.Second) {
			if code, ra = guess(t, n.url, reg.Username, wrong); code != http.StatusTooManyRequests || time.Now().After(deadline) {
				break
			}
		}
		if code != http.StatusUnauthorized {
			t.Fatalf("failure %d on %s after the wait: %d, want 401", 6+i, n.name, code)
		}
	}
	start := time.Now()
	for _, n := range nodes {
		code, ra := guess(t, n.url, reg.Username, reg.Password)
		if time.Since(start) > 3*time.Second {
			t.Fatalf("the machine is too slow for this test: %v for the checks of a 4 s wait", time.Since(start))
		}
		if code != http.StatusTooManyRequests || ra < 1 || ra > 4 {
			t.Fatalf("the right password on %s during the 4 s wait after 7 failures: %d (Retry-After %d), want 429 (1-4 s)", n.name, code, ra)
		}
	}
	var code, ra int
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(time.Duration(ra) * time.Second) {
		if code, ra = guess(t, c.url, reg.Username, reg.Password); code != http.StatusTooManyRequests || time.Now().After(deadline) {
			break
		}
	}
	if code != http.StatusOK {
		t.Fatalf("the right password on C after the wait: %d", code)
	}
	for _, n := range nodes {
		if strings.Contains(n.stderr.String(), reg.Username) {
			t.Errorf("%s logged the user name", n.name)
		}
	}
}

// TestClusterTickets: a WebSocket ticket proved on node A opens logged-in sockets on C and on B, as it opens
// several on one node; shown on B with another login's session cookie it is refused and burned, on every node
// within a second (C, which took it, and A, which issued it); a challenge issued on A is answered on B or C,
// once; a ticket of a login that logged out on B is refused on C.
func TestClusterTickets(t *testing.T) {
	_, _, a, b, c := threeNodes(t)
	nodes := []*clusterNode{a, b, c}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	alice, _ := newUser(ctx, t, a.url, "alice")
	bob, _ := newUser(ctx, t, b.url, "bob")
	dial := func(n *clusterNode, h http.Header) error {
		t.Helper()
		conn, err := client.Dial(ctx, "ws"+strings.TrimPrefix(n.url, "http")+"ws", &client.Options{Header: h})
		if err == nil {
			t.Cleanup(func() { conn.Close() })
		}
		return err
	}
	ticketOn := func(n *clusterNode) (http.Header, string) {
		t.Helper()
		on, _ := alice.On(n.url)
		h, err := on.TicketHeader(ctx)
		if err != nil {
			t.Fatalf("ticket on %s: %v", n.name, err)
		}
		_, tk, _ := strings.Cut(h.Get("Cookie"), "ws_ticket=")
		return h, tk
	}

	h, tk := ticketOn(a)
	for _, n := range []*clusterNode{c, b} {
		if err := dial(n, h); err != nil {
			t.Fatalf("a ticket proved on A, on %s: %v", n.name, err)
		}
	}
	stolen := http.Header{}
	stolen.Set("Cookie", "session="+bob.Session+"; ws_ticket="+tk)
	if err := dial(b, stolen); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("alice's ticket with bob's session on B: %v, want 401", err)
	}
	for _, n := range []*clusterNode{c, a} {
		// A socket opened meanwhile is closed at once: the account's sessions stay under its bound (whose refusal
		// is a 401 too).
		eventually(t, time.Second, "the ticket burned on B is refused on "+n.name, func() bool {
			conn, err := client.Dial(ctx, "ws"+strings.TrimPrefix(n.url, "http")+"ws", &client.Options{Header: h})
			if err == nil {
				conn.Close()
				<-conn.Done()
				return false
			}
			return strings.Contains(err.Error(), "401")
		})
	}

	// A challenge issued on A, its proof sent to B and C at once: one of them takes it from A and answers with
	// a ticket, the other finds it used (a challenge is used once in the cluster).
	code, body, _ := apiCall(t, "POST", a.url+"api/session/challenge", alice.Session, nil)
	var ch struct{ Challenge string }
	if code != http.StatusOK || json.Unmarshal([]byte(body), &ch) != nil || ch.Challenge == "" {
		t.Fatalf("challenge on A: %d %s", code, body)
	}
	var sig bytes.Buffer
	if err := openpgp.ArmoredDetachSign(&sig, alice.Key, strings.NewReader(ch.Challenge), nil); err != nil {
		t.Fatal(err)
	}
	proof, _ := json.Marshal(map[string]string{"challenge": ch.Challenge, "signature": sig.String()})
	answers := map[int]int{}
	var ticket string
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, n := range []*clusterNode{b, c} {
		wg.Go(func() {
			code, _, resp := apiCall(t, "POST", n.url+"api/session/proof", alice.Session, string(proof))
			mu.Lock()
			defer mu.Unlock()
			answers[code]++
			for _, k := range resp.Cookies() {
				if k.Name == "ws_ticket" {
					ticket = k.Value
				}
			}
		})
	}
	wg.Wait()
	if answers[http.StatusOK] != 1 || answers[http.StatusBadRequest] != 1 || ticket == "" {
		t.Fatalf("one proof of a challenge issued on A, sent to B and C at once: %v, want one 200 with a ticket and one 400", answers)
	}
	h3 := http.Header{}
	h3.Set("Cookie", "session="+alice.Session+"; ws_ticket="+ticket)
	if err := dial(a, h3); err != nil {
		t.Fatalf("the ticket of a proof of A's challenge, on A: %v", err)
	}

	h2, _ := ticketOn(a)
	if err := dial(c, h2); err != nil {
		t.Fatalf("a new ticket proved on A, on C: %v", err)
	}
	onB, _ := alice.On(b.url)
	if _, err := onB.Call(ctx, "POST", "/api/logout", nil); err != nil {
		t.Fatal(err)
	}
	if err := dial(c, h2); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("the ticket of a login that logged out on B, on C: %v, want 401", err)
	}
	for _, n := range nodes {
		for _, leak := range []string{alice.Name, bob.Name, tk} {
			if strings.Contains(n.stderr.String(), leak) {
				t.Errorf("%s logged %q", n.name, leak)
			}
		}
	}
}

// TestClusterRates: an account's searches (10 at once, then one every 2 s) and key lookups (20 at once, then one
// a second) spread over three nodes are limited as on one node: of 3×burst requests in a row, the burst and
// what refilled meanwhile are answered, the rest refused (429).
func TestClusterRates(t *testing.T) {
	_, _, a, b, c := threeNodes(t)
	nodes := []*clusterNode{a, b, c}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	alice, _ := newUser(ctx, t, a.url, "alice")
	bob, _ := newUser(ctx, t, b.url, "bob")
	for _, tc := range []struct {
		what  string
		path  string
		burst int
		every time.Duration
	}{
		{"searches", "api/users?prefix=" + bob.Name[:3], 10, 2 * time.Second},
		{"key lookups", "api/users/" + bob.Name + "/key", 20, time.Second},
	} {
		answered, refused := 0, 0
		start := time.Now()
		for i := range 3 * tc.burst {
			switch code, body, _ := apiCall(t, "GET", nodes[i%3].url+tc.path, alice.Session, nil); code {
			case http.StatusOK:
				answered++
			case http.StatusTooManyRequests:
				refused++
			default:
				t.Fatalf("%s on %s: %d %s", tc.what, nodes[i%3].name, code, body)
			}
		}
		refilled := int(time.Since(start) / tc.every)
		t.Logf("%d %s over three nodes in %v: %d answered, %d refused", 3*tc.burst, tc.what, time.Since(start).Round(time.Millisecond), answered, refused)
		if answered < tc.burst || answered > tc.burst+refilled {
			t.Errorf("%d %s over three nodes in %v: %d answered, want %d to %d as on one node", 3*tc.burst, tc.what,
				time.Since(start).Round(time.Millisecond), answered, tc.burst, tc.burst+refilled)
		}
	}
}
