package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/cleanrelay/cleanrelay/relay/client"
	"github.com/cleanrelay/cleanrelay/relay/cluster/natsnet"
)

// clusterNode is one "cleanrelay serve --cluster" process of a test.
type clusterNode struct {
	name, url, admin string
	cmd              *exec.Cmd
	stderr           *lockedBuffer
}

// writeSecret writes a fresh cluster secret (base64 text, as `openssl rand -base64 32` makes) into the test's
// directory and returns the file.
func writeSecret(t *testing.T) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "cluster_secret")
	if err := os.WriteFile(f, []byte(rand.Text()+rand.Text()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// natsOrder lists the cluster's servers starting with the one at index first.
func natsOrder(nc *natsnet.Cluster, first int) string {
	urls := nc.URLs()
	return strings.Join(append(urls[first:], urls[:first]...), ",")
}

// startNode starts a relay node on 127.0.0.1 that joins the cluster through nc's server first (then the others),
// with the nkey seed from the environment and the secret from secretFile.
func startNode(t *testing.T, nc *natsnet.Cluster, name string, first int, secretFile string, extra ...string) *clusterNode {
	t.Helper()
	env := []string{"CLEANRELAY_NATS_NKEY_SEED=" + string(nc.NodeSeed()), "CLEANRELAY_NODE=" + name}
	cmd, lines, stderr := startServeLines(t, 2, env, append([]string{"--local-only", "--listen", "127.0.0.1:0",
		"--admin-listen", "127.0.0.1:0", "--log-level", "debug", "--cluster", natsOrder(nc, first),
		"--cluster-secret-file", secretFile, "--cluster-catch-up", "10s"}, extra...)...)
	n := &clusterNode{name: name, cmd: cmd, stderr: stderr,
		url: field(t, lines[0], "cleanrelay: serving on "), admin: field(t, lines[1], "cleanrelay: admin on ")}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("stderr of node %s:\n%s", name, clip(stderr.String(), 3000))
		}
	})
	return n
}

// apiCall makes one accounts API request with an optional session cookie and returns the status and body.
func apiCall(t *testing.T, method, url, token string, body any) (int, string, *http.Response) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = strings.NewReader(fmt.Sprint(body))
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.AddCookie(&http.Cookie{Name: "session", Value: token})
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp
}

// login logs user in on the node at url and returns the session token.
func login(t *testing.T, url, user, password string) (string, int) {
	t.Helper()
	code, _, resp := apiCall(t, "POST", url+"api/login", "", fmt.Sprintf(`{"username":%q,"password":%q}`, user, password))
	for _, c := range resp.Cookies() {
		if c.Name == "session" {
			return c.Value, code
		}
	}
	return "", code
}

// adminAction posts {"username": user} to an operator route of the node.
func adminAction(t *testing.T, n *clusterNode, route, user string) {
	t.Helper()
	if code, body, _ := apiCall(t, "POST", n.admin+"admin/"+route, "", fmt.Sprintf(`{"username":%q}`, user)); code != http.StatusNoContent {
		t.Fatalf("admin %s on %s: %d %s", route, n.name, code, body)
	}
}

// waitDone waits up to limit for a WebSocket to end, and returns how long it took.
func waitDone(t *testing.T, c *client.Conn, since time.Time, limit time.Duration, what string) time.Duration {
	t.Helper()
	select {
	case <-c.Done():
		return time.Since(since)
	case <-time.After(time.Until(since.Add(limit))):
		t.Fatalf("%s: the socket is still open %v after the change", what, limit)
		return 0
	}
}

// eventually polls cond every 20 ms until it is true or limit has passed.
func eventually(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(limit); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, limit)
		}
	}
}

// scrape returns one sample of the node's /metrics.
func (n *clusterNode) scrape(t *testing.T, name string) float64 {
	t.Helper()
	_, body := httpGet(t, n.admin+"metrics", "")
	return sample(t, body, name)
}

func (n *clusterNode) healthy(t *testing.T) bool {
	t.Helper()
	code, _ := httpGet(t, n.admin+"healthz", "")
	return code == http.StatusOK
}

// newUser registers a user with a key on the node at url.
func newUser(ctx context.Context, t *testing.T, url, who string) (*client.Account, client.Registration) {
	t.Helper()
	tag := strings.ToLower(rand.Text()[:8])
	reg := client.Registration{Username: who + "-" + tag, FullName: "Cluster " + who, Email: who + "." + tag + "@example.org",
		Password: "Correct-h0rse-" + tag}
	a, err := client.NewAccount(ctx, url, reg, nil)
	if err != nil {
		t.Fatalf("register %s: %v", who, err)
	}
	return a, reg
}

// session opens a logged-in WebSocket of account a on the node at url (the ticket is made there).
func session(ctx context.Context, t *testing.T, a *client.Account, url string) *client.Conn {
	t.Helper()
	on, err := a.On(url)
	if err != nil {
		t.Fatal(err)
	}
	h, err := on.TicketHeader(ctx)
	if err != nil {
		t.Fatalf("ticket on %s: %v", url, err)
	}
	c, err := client.Dial(ctx, "ws"+strings.TrimPrefix(url, "http")+"ws", &client.Options{Header: h})
	if err != nil {
		t.Fatalf("logged-in socket on %s: %v", url, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestClusterAccounts runs three NATS servers and three relay nodes, and then a fourth node: what is done to
// accounts on one node is in force on the others (a revocation within 1 s, a logout on every node's sockets),
// the late node catches up, replication goes on through a SIGKILL of a NATS server, and a node that reaches no
// NATS server says so on /healthz.
func TestClusterAccounts(t *testing.T) {
	nc := natsnet.Start(t, natsnet.Options{})
	secret := writeSecret(t)
	a, b, c := startNode(t, nc, "node-a", 0, secret), startNode(t, nc, "node-b", 1, secret), startNode(t, nc, "node-c", 2, secret)
	nodes := []*clusterNode{a, b, c}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	for _, n := range nodes {
		eventually(t, 5*time.Second, n.name+" sees two peers", func() bool { return n.scrape(t, "cleanrelay_cluster_peers") == 2 })
		if !n.healthy(t) || n.scrape(t, "cleanrelay_cluster_nats_connected") != 1 {
			t.Fatalf("%s is not healthy and connected", n.name)
		}
	}

	// Registered on A (with its key): logs in on C, and the token C signed works on A and B.
	alice, areg := newUser(ctx, t, a.url, "alice")
	bob, _ := newUser(ctx, t, b.url, "bob")
	tok, code := login(t, c.url, areg.Username, areg.Password)
	if code != http.StatusOK || tok == "" {
		t.Fatalf("alice, registered on A, logs in on C: %d", code)
	}
	for _, n := range nodes {
		if code, body, _ := apiCall(t, "GET", n.url+"api/me", tok, nil); code != http.StatusOK || !strings.Contains(body, areg.Username) {
			t.Fatalf("C's token on %s: %d %s", n.name, code, body)
		}
	}

	// A logout on B ends that login's sockets on A and C, and its token everywhere.
	onC, _ := alice.On(c.url)
	onC.Session = tok
	sa, sc := session(ctx, t, onC, a.url), session(ctx, t, onC, c.url)
	other := session(ctx, t, alice, c.url) // alice's first login, made on A: it must survive
	start := time.Now()
	if code, _, _ := apiCall(t, "POST", b.url+"api/logout", tok, nil); code != http.StatusNoContent {
		t.Fatalf("logout on B: %d", code)
	}
	t.Logf("logout on B ended the login's sockets on A in %v and on C in %v",
		waitDone(t, sa, start, time.Second, "logout on B, socket on A").Round(time.Millisecond),
		waitDone(t, sc, start, time.Second, "logout on B, socket on C").Round(time.Millisecond))
	for _, n := range nodes {
		if code, _, _ := apiCall(t, "GET", n.url+"api/me", tok, nil); code != http.StatusUnauthorized {
			t.Fatalf("the logged-out token on %s: %d, want 401", n.name, code)
		}
	}
	select {
	case <-other.Done():
		t.Fatal("alice's other login lost its socket on C")
	default:
	}

	// alice opens a dialog with bob on A: his session on C is told within 1 s.
	bs := session(ctx, t, bob, c.url)
	start = time.Now()
	dlg, err := alice.OpenDialog(ctx, bob.Name)
	if err != nil {
		t.Fatal(err)
	}
	for told := false; !told; {
		select {
		case ev := <-bs.Events():
			told = ev.Kind == client.KindDialog && ev.User == alice.Name && ev.Room == dlg.Room && ev.Cap == dlg.Cap
		case <-time.After(time.Until(start.Add(time.Second))):
			t.Fatal("bob's session on C was not told of the dialog alice opened on A within 1 s")
		}
	}
	t.Logf("a dialog opened on A was announced to the session on C in %v", time.Since(start).Round(time.Millisecond))

	// The operator revokes bob's key on A: his socket on C ends within 1 s, and C gives him no new one.
	start = time.Now()
	adminAction(t, a, "revoke-key", bob.Name)
	t.Logf("a revoke on A ended the sender's socket on C in %v", waitDone(t, bs, start, time.Second, "revoke on A, socket on C").Round(time.Millisecond))
	bobOnC, _ := bob.On(c.url)
	if _, err := bobOnC.TicketHeader(ctx); err == nil || !strings.Contains(err.Error(), "409") {
		t.Fatalf("bob's new session on C after the revoke: %v, want 409 no_key", err)
	}
	// Disabled on C: refused on A.
	adminAction(t, c, "disable", areg.Username)
	if _, code := login(t, a.url, areg.Username, areg.Password); code != http.StatusForbidden {
		t.Fatalf("login on A after disabling on C: %d, want 403", code)
	}
	eventually(t, time.Second, "the disabled user's socket on C ends", func() bool {
		select {
		case <-other.Done():
			return true
		default:
			return false
		}
	})

	// A node that joins later catches up, and what is done on it reaches the others.
	d := startNode(t, nc, "node-d", 2, secret)
	if code, body, _ := apiCall(t, "GET", d.url+"api/users/"+bob.Name+"/key", alice.Session, nil); code != http.StatusForbidden || !strings.Contains(body, "account_disabled") {
		t.Fatalf("key lookup with a disabled user's token on D: %d %s, want 403 account_disabled", code, body)
	}
	if _, code := login(t, d.url, areg.Username, areg.Password); code != http.StatusForbidden {
		t.Fatalf("disabled alice on the late node: %d, want 403", code)
	}
	carol, creg := newUser(ctx, t, d.url, "carol")
	if code, body, _ := apiCall(t, "GET", d.url+"api/users/"+bob.Name+"/key", carol.Session, nil); code != http.StatusNotFound || !strings.Contains(body, "no_key") {
		t.Fatalf("bob's revoked key on the late node: %d %s", code, body)
	}
	if _, code := login(t, a.url, creg.Username, creg.Password); code != http.StatusOK {
		t.Fatalf("carol, registered on the late node, on A: %d", code)
	}
	nodes = append(nodes, d)
	for _, n := range nodes {
		eventually(t, 5*time.Second, n.name+" sees three peers", func() bool { return n.scrape(t, "cleanrelay_cluster_peers") == 3 })
	}

	// SIGKILL of the NATS server A is on: A goes on through another, and its changes reach C.
	nc.Servers()[0].Kill()
	eventually(t, 10*time.Second, "A healthy again after its NATS server died", func() bool { return a.healthy(t) })
	dave, dreg := newUser(ctx, t, a.url, "dave")
	if _, code := login(t, c.url, dreg.Username, dreg.Password); code != http.StatusOK {
		t.Fatalf("dave, registered on A after the SIGKILL, on C: %d", code)
	}
	ds := session(ctx, t, dave, c.url)
	start = time.Now()
	adminAction(t, a, "revoke-key", dave.Name)
	t.Logf("after the SIGKILL, a revoke on A ended the socket on C in %v", waitDone(t, ds, start, time.Second, "revoke on A after SIGKILL").Round(time.Millisecond))
	if lag := c.scrape(t, "cleanrelay_cluster_replication_lag_seconds"); lag < 0 || lag > 1 {
		t.Errorf("C's replication lag %v s", lag)
	}

	// No NATS server at all: /healthz fails, and "cleanrelay health" says so.
	nc.Servers()[1].Kill()
	nc.Servers()[2].Kill()
	eventually(t, 10*time.Second, "A unhealthy without NATS", func() bool { return !a.healthy(t) })
	var out, errOut bytes.Buffer
	if code := run([]string{"health", "--admin-listen", strings.TrimSuffix(strings.TrimPrefix(a.admin, "http://"), "/")}, &out, &errOut); code != 1 {
		t.Fatalf("cleanrelay health without NATS: exit %d (%s)", code, errOut.String())
	}
	if a.scrape(t, "cleanrelay_cluster_nats_connected") != 0 {
		t.Fatal("nats_connected reads 1 without NATS")
	}
	for _, n := range nodes {
		n.cmd.Process.Signal(syscall.SIGTERM)
		if err := n.cmd.Wait(); err != nil {
			t.Errorf("%s exited with %v", n.name, err)
		}
		for _, leak := range []string{areg.Username, areg.Password, creg.Username, bob.Name, tok} {
			if strings.Contains(n.stderr.String(), leak) {
				t.Errorf("%s logged %q", n.name, leak)
			}
		}
	}
}

// TestClusterOutsiders: with the relay cluster running, a NATS client without credentials or with another nkey
// cannot connect, so neither subscribes nor publishes; a client holding the nodes' nkey but not the cluster
// secret sees subjects and payloads that carry nothing of an account, and what it publishes is refused.
func TestClusterOutsiders(t *testing.T) {
	nc := natsnet.Start(t, natsnet.Options{})
	secret := writeSecret(t)
	a, c := startNode(t, nc, "node-a", 0, secret), startNode(t, nc, "node-c", 2, secret)
	eventually(t, 5*time.Second, "A sees C", func() bool { return a.scrape(t, "cleanrelay_cluster_peers") == 1 })

	for name, opts := range map[string][]nats.Option{
		"no credentials": nil,
		"another nkey": func() []nats.Option {
			kp, _ := nkeys.CreateUser()
			pub, _ := kp.PublicKey()
			return []nats.Option{nats.Nkey(pub, kp.Sign)}
		}(),
	} {
		conn, err := nats.Connect(nc.Servers()[1].URL, append(opts, nats.NoReconnect())...)
		if !errors.Is(err, nats.ErrAuthorization) {
			if conn != nil {
				conn.Close()
			}
			t.Errorf("%s: connect gave %v, want an authorization violation (it could subscribe and publish)", name, err)
		}
	}

	// An insider on NATS (the nodes' nkey, no cluster secret) records everything while an account is made.
	spy := nc.Connect(t, 1)
	seen := make(chan *nats.Msg, 10000)
	if _, err := spy.ChanSubscribe("cr.>", seen); err != nil {
		t.Fatal(err)
	}
	spy.Flush()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	eve, reg := newUser(ctx, t, a.url, "eve")
	if _, code := login(t, c.url, reg.Username, reg.Password); code != http.StatusOK {
		t.Fatalf("login on C: %d", code)
	}
	adminAction(t, a, "revoke-key", eve.Name)
	// Three changes (registration, key, revocation) on one subject, heartbeats on another.
	var msgs []*nats.Msg
	subjects := map[string]int{}
	eventually(t, 5*time.Second, "the spy sees the replication", func() bool {
		for len(seen) > 0 {
			m := <-seen
			msgs = append(msgs, m)
			subjects[m.Subject]++
		}
		return len(subjects) >= 2 && len(msgs) >= 8
	})
	fp := strings.ToUpper(hex.EncodeToString(eve.Key.PrimaryKey.Fingerprint))
	for _, m := range msgs {
		// The kinds are looked for as words in subjects and as JSON keys in payloads: two letters turn up by chance in
		// random base32 or ciphertext (it failed a run with "hb" in a sealed payload).
		for _, leak := range []string{reg.Username, "eve", reg.Email, reg.Password, "Cluster", fp, "$2a$", "BEGIN PGP", `"u"`, `"dir"`, `"hb"`} {
			if strings.Contains(m.Subject[3:], strings.Trim(leak, `"`)) && len(strings.Trim(leak, `"`)) > 2 || bytes.Contains(m.Data, []byte(leak)) {
				t.Fatalf("an insider without the secret reads %q in %s", leak, m.Subject)
			}
		}
	}
	// What the insider publishes, new or replayed from another subject, is refused; nothing changes.
	// Every subject is one that A or C listens on, so each forged message is refused by one of them at least.
	refused := func() float64 {
		return a.scrape(t, "cleanrelay_cluster_refused_total") + c.scrape(t, "cleanrelay_cluster_refused_total")
	}
	refusedBefore := refused()
	accounts := c.scrape(t, "cleanrelay_cluster_changes_applied_total")
	for s := range subjects {
		spy.Publish(s, []byte("forged"))
		spy.Publish(s, msgs[0].Data) // sealed for another subject, unless it is that one
	}
	spy.Flush()
	eventually(t, 5*time.Second, "the nodes refuse the insider's messages", func() bool {
		return refused() >= refusedBefore+float64(len(subjects))
	})
	if got := c.scrape(t, "cleanrelay_cluster_changes_applied_total"); got != accounts {
		t.Errorf("C applied %v changes from the insider", got-accounts)
	}
	if !c.healthy(t) {
		t.Error("C unhealthy after the insider's messages")
	}

	// Rooms: the insider records a room made on A and joined on C, with frames both ways, and reads nothing of
	// it; replaying every message it recorded adds no member and no frame.
	for len(seen) > 0 {
		<-seen
	}
	x := createOn(ctx, t, "x", a.url, 2)
	y := joinOn(ctx, t, "y", c.url, x)
	x.until("y's join", isPresence(y.room.Member, "join"))
	hello, back := rand.Text(), rand.Text()
	x.send(t, hello)
	y.until("x's frame", isFrame(hello))
	y.c.Ack(y.room.Ch, y.last)
	y.send(t, back)
	x.until("y's frame", isFrame(back))
	var roomMsgs []*nats.Msg
	eventually(t, 5*time.Second, "the spy sees the room's traffic", func() bool {
		for len(seen) > 0 {
			roomMsgs = append(roomMsgs, <-seen)
		}
		return len(roomMsgs) >= 4
	})
	rawID, _ := base64.RawURLEncoding.DecodeString(x.room.ID)
	rawCap, _ := base64.RawURLEncoding.DecodeString(x.room.Cap)
	for _, m := range roomMsgs {
		for _, leak := range [][]byte{[]byte(hello), []byte(back), []byte(x.room.ID), []byte(x.room.Cap), rawID, rawCap} {
			if bytes.Contains([]byte(m.Subject), leak) || bytes.Contains(m.Data, leak) {
				t.Fatalf("an insider without the secret reads a room's %q in %s", leak, m.Subject)
			}
		}
	}
	// A replayed room message is refused, or dropped as one the link took already (or confirming nothing new).
	dups := func() float64 {
		return a.scrape(t, "cleanrelay_cluster_room_duplicates_total") + c.scrape(t, "cleanrelay_cluster_room_duplicates_total")
	}
	refusedBefore = refused() + dups()
	xn, yn := len(x.log), len(y.log)
	for _, m := range roomMsgs {
		spy.Publish(m.Subject, m.Data)
	}
	spy.Flush()
	eventually(t, 5*time.Second, "the nodes refuse the replayed room messages", func() bool {
		return refused()+dups() >= refusedBefore+float64(len(roomMsgs))/2
	})
	x.send(t, "after the replay")
	y.until("x's frame after the replay", isFrame("after the replay"))
	y.send(t, "after the replay too")
	x.until("y's frame after the replay", isFrame("after the replay too"))
	if got := append(x.log[xn:], y.log[yn:]...); len(got) != 2 {
		t.Errorf("after the replay, x and y were told %q, want one frame each", got)
	}
}

// TestClusterNoDisk runs three NATS servers and three relay nodes, all under `strace -f`, through registration,
// logins on other nodes, logged-in sockets, a logout and a revocation: no process opened a file for writing,
// and no relay logged anything of the users.
func TestClusterNoDisk(t *testing.T) {
	if !*straceFlag {
		t.Skip("needs -nats -strace (.ci/test-nats.sh)")
	}
	nc := natsnet.Start(t, natsnet.Options{Strace: true})
	dir := t.TempDir()
	secret, seed := filepath.Join(dir, "secret"), filepath.Join(dir, "seed")
	os.WriteFile(secret, []byte(rand.Text()+rand.Text()), 0o600)
	os.WriteFile(seed, nc.NodeSeed(), 0o600)
	var relays []*tracedRelay
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i, name := range []string{"node-a", "node-b", "node-c"} {
		wg.Go(func() {
			r := startTraced(t, time.Minute, "--local-only", "--listen", "127.0.0.1:0", "--log-level", "debug",
				"--cluster", natsOrder(nc, i), "--node", name, "--cluster-secret-file", secret, "--nats-nkey-seed-file", seed,
				"--cluster-catch-up", "10s")
			mu.Lock()
			relays = append(relays, r)
			mu.Unlock()
		})
	}
	wg.Wait()
	if len(relays) != 3 {
		t.FailNow()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ud := &userData{}
	ra := func(r *tracedRelay) relayAccess {
		return relayAccess{url: r.url, http: &http.Client{Timeout: 30 * time.Second}}
	}
	alice := register(ctx, t, ra(relays[0]), ud, "alice")
	bob := register(ctx, t, ra(relays[1]), ud, "bob")
	for _, r := range relays {
		s := loggedIn(ctx, t, ra(r), ud, func() *client.Account { on, _ := alice.On(r.url); return on }())
		defer s.Close()
	}
	bs := loggedIn(ctx, t, ra(relays[2]), ud, func() *client.Account { on, _ := bob.On(relays[2].url); return on }())
	onB, _ := alice.On(relays[1].url)
	if _, err := onB.Call(ctx, "POST", "/api/logout", nil); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := apiCall(t, "GET", relays[2].url+"api/me", alice.Session, nil); code != http.StatusUnauthorized {
		t.Fatalf("alice's logged-out token on C: %d", code)
	}
	bs.Close()

	// A room made on A, joined on B, frames both ways, a resume on C: rooms traffic crosses NATS, and still
	// nothing reaches a disk or a log.
	x := createOn(ctx, t, "x", relays[0].url, 2)
	y := joinOn(ctx, t, "y", relays[1].url, x)
	ud.joined(x.room)
	ud.joined(y.room)
	x.until("y's join", isPresence(y.room.Member, "join"))
	for range 4 {
		p := make([]byte, 256)
		rand.Read(p)
		ud.frame(p)
		x.send(t, string(p))
		y.until("x's frame", isFrame(string(p)))
		rand.Read(p)
		ud.frame(p)
		y.send(t, string(p))
		x.until("y's frame", isFrame(string(p)))
	}
	y.resumeOn(ctx, relays[2].url, y.last)
	x.until("y back", isPresence(y.room.Member, "back"))
	x.c.Close()
	y.c.Close()
	for _, r := range relays {
		r.stop(t)
	}
	nc.Stop()
	for _, r := range relays {
		r.checkTrace(t, false)
		checkNoUserData(t, r.stdout.String(), r.relayStderr(t), ud)
	}
	nc.CheckTraces(t)
}

// TestServeClusterFlags: the cluster flags are refused, with the flag named, when they are incomplete or clash with
// the token flags; a node that reaches no NATS server does not start. No NATS server is needed.
func TestServeClusterFlags(t *testing.T) {
	secret := writeSecret(t)
	short := filepath.Join(t.TempDir(), "short")
	os.WriteFile(short, []byte("too short\n"), 0o600)
	seedEnv := "CLEANRELAY_NATS_NKEY_SEED"
	kp, _ := nkeys.CreateUser()
	seed, _ := kp.Seed()
	base := []string{"serve", "--local-only", "--listen", "127.0.0.1:0"}
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"node without cluster", nil, []string{"--node", "a"}, "--node needs --cluster"},
		{"no node", nil, []string{"--cluster", "nats://127.0.0.1:1"}, "--node"},
		{"bad node", nil, []string{"--cluster", "nats://127.0.0.1:1", "--node", "Node_A"}, "--node"},
		{"bad url", nil, []string{"--cluster", "http://127.0.0.1:1", "--node", "a"}, "--cluster"},
		{"url with password", nil, []string{"--cluster", "nats://u:p@127.0.0.1:1", "--node", "a"}, "without credentials"},
		{"no secret", nil, []string{"--cluster", "nats://127.0.0.1:1", "--node", "a"}, "cluster secret"},
		{"no seed", nil, []string{"--cluster", "nats://127.0.0.1:1", "--node", "a", "--cluster-secret-file", secret}, "nkey seed"},
		{"token key", map[string]string{seedEnv: string(seed)}, []string{"--cluster", "nats://127.0.0.1:1", "--node", "a", "--cluster-secret-file", secret, "--token-key", secret}, "--token-key and --cluster"},
		{"RS256", map[string]string{seedEnv: string(seed)}, []string{"--cluster", "nats://127.0.0.1:1", "--node", "a", "--cluster-secret-file", secret, "--token-alg", "RS256"}, "EdDSA"},
		{"short secret", map[string]string{seedEnv: string(seed)}, []string{"--cluster", "nats://127.0.0.1:1", "--node", "a", "--cluster-secret-file", short}, "at least 32"},
		{"bad seed", map[string]string{seedEnv: "SUnotaseed"}, []string{"--cluster", "nats://127.0.0.1:1", "--node", "a", "--cluster-secret-file", secret}, "nkey seed"},
		{"no NATS", map[string]string{seedEnv: string(seed)}, []string{"--cluster", "nats://127.0.0.1:1", "--node", "a", "--cluster-secret-file", secret}, "failed to connect to NATS"},
		{"heartbeat over timeout", map[string]string{seedEnv: string(seed)}, []string{"--cluster", "nats://127.0.0.1:1", "--node", "a", "--cluster-secret-file", secret, "--cluster-heartbeat", "2s"}, "peer timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			var stdout, stderr bytes.Buffer
			code := run(append(base, tt.args...), &stdout, &stderr)
			if code == 0 || !strings.Contains(stderr.String(), tt.want) {
				t.Fatalf("exit %d, stderr %q; want an error saying %q", code, stderr.String(), tt.want)
			}
			if strings.Contains(stderr.String(), string(seed)) {
				t.Fatal("the error shows the seed")
			}
		})
	}
}

// threeNodes is the usual cluster of the tests: three NATS servers and three relay nodes, A, B and C (each
// joining through another server first) with extra flags, each hearing the two others. It returns the secret's
// file too, for a node started later.
func threeNodes(t *testing.T, extra ...string) (nc *natsnet.Cluster, secret string, a, b, c *clusterNode) {
	t.Helper()
	nc = natsnet.Start(t, natsnet.Options{})
	secret = writeSecret(t)
	a, b, c = startNode(t, nc, "node-a", 0, secret, extra...), startNode(t, nc, "node-b", 1, secret, extra...), startNode(t, nc, "node-c", 2, secret, extra...)
	for _, n := range []*clusterNode{a, b, c} {
		eventually(t, 10*time.Second, n.name+" sees two peers", func() bool { return n.scrape(t, "cleanrelay_cluster_peers") == 2 })
	}
	return nc, secret, a, b, c
}
