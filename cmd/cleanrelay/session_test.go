package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/cleanrelay/cleanrelay/relay/client"
)

// relayAccess is how the session's clients reach the relay: directly on loopback, or through Tor.
type relayAccess struct {
	url   string                                                            // http://HOST/ as the relay printed it
	http  *http.Client                                                      // for the page and the accounts API
	dial  func(ctx context.Context, network, addr string) (net.Conn, error) // for WebSockets; nil: direct
	grace time.Duration                                                     // the relay's --grace
}

// userData is everything of the users' that the session made: none of it may appear in what the relay wrote.
type userData struct {
	texts   []string    // user strings: names, tokens, ids, texts
	what    []string    // what[i] says what texts[i] is
	samples [][]byte    // 18-byte pieces of frame payloads (ciphertext) and of plaintexts
	sizes   map[int]int // frame payload sizes seen, with a count
}

func (u *userData) add(what, value string) {
	if slices.Contains(u.texts, value) {
		return
	}
	u.texts = append(u.texts, value)
	u.what = append(u.what, what)
}

// sampleLen is the length of a payload sample: 15 bytes (20 base64 characters) at each of 3 offsets.
const sampleLen = 18

// frame records a frame payload: its size, and two pieces of it from where it is random (its start is an
// OpenPGP header, the same in many frames).
func (u *userData) frame(p []byte) {
	if u.sizes == nil {
		u.sizes = map[int]int{}
	}
	u.sizes[len(p)]++
	if len(p) >= 64 {
		u.samples = append(u.samples, p[len(p)/2:len(p)/2+sampleLen], p[len(p)-sampleLen:])
	}
}

// fullSession runs, against a relay, what issue 8 calls a full session: the page; two registrations with full
// names and e-mail addresses; a failed and good logins; key uploads with their proofs; key lookup and search; a
// dialog in which the two users exchange signed and encrypted OpenPGP messages and a file in 32 KiB chunks with
// the browser client's flow control; an anonymous room with frames both ways, a dropped connection and its
// resume, and a burn; a room left to its grace timer; a logout. It returns what the relay must not have written.
func fullSession(t *testing.T, ra relayAccess) *userData {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ud := &userData{}
	resp, err := ra.http.Get(ra.url)
	if err != nil {
		t.Fatalf("GET the page: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET the page: %s", resp.Status)
	}

	alice, bob := register(ctx, t, ra, ud, "alice"), register(ctx, t, ra, ud, "bob")
	if _, err := bob.Call(ctx, "GET", "/api/users/"+alice.Name+"/key", nil); err != nil {
		t.Fatalf("key lookup: %v", err)
	}
	found, err := bob.Call(ctx, "GET", "/api/users?prefix="+alice.Name[:8], nil)
	if err != nil || !bytes.Contains(found, []byte(alice.Name)) {
		t.Fatalf("search found %s, %v; want %s", found, err, alice.Name)
	}
	dialog(ctx, t, ra, ud, alice, bob)
	mailboxTraffic(ctx, t, alice, bob, 2).add(ud) // two stay waiting: the shutdown wipes them
	anonymousRooms(ctx, t, ra, ud)
	if _, err := alice.Call(ctx, "POST", "/api/logout", nil); err != nil {
		t.Fatalf("logout: %v", err)
	}
	if _, err := alice.Call(ctx, "GET", "/api/me", nil); err == nil || !strings.Contains(err.Error(), "HTTP 401") {
		t.Fatalf("after logout, /api/me answered %v; want HTTP 401", err)
	}
	return ud
}

// register makes an account whose every field is unique to this run (so that a match in the relay's output is
// never a coincidence), tries a wrong password once, and publishes a key.
func register(ctx context.Context, t *testing.T, ra relayAccess, ud *userData, who string) *client.Account {
	t.Helper()
	tag := strings.ToLower(rand.Text()[:10]) // base32: letters and digits, fine in every field
	reg := client.Registration{
		Username: who + "-" + tag,
		FullName: strings.ToUpper(who[:1]) + who[1:] + " Tracer" + tag,
		Email:    who + "." + tag + "@example.org",
		Password: "Correct-h0rse-" + tag,
	}
	a, err := client.NewAccount(ctx, ra.url, reg, ra.http)
	if err != nil {
		t.Fatalf("register %s: %v", who, err)
	}
	wrong := reg.Password + "x"
	if _, err := a.Call(ctx, "POST", "/api/login", map[string]string{"username": reg.Username, "password": wrong}); err == nil || !strings.Contains(err.Error(), "HTTP 401") {
		t.Fatalf("login with a wrong password: %v; want HTTP 401", err)
	}
	fp := hex.EncodeToString(a.Key.PrimaryKey.Fingerprint)
	ud.add("username", reg.Username)
	ud.add("full name", reg.FullName)
	ud.add("e-mail", reg.Email)
	ud.add("password", reg.Password)
	ud.add("wrong password", wrong)
	ud.add("access token (JWT)", a.Session)
	ud.add("fingerprint", strings.ToUpper(fp))
	ud.add("fingerprint", fp)
	ud.add("key ID", strings.ToUpper(fp[len(fp)-16:]))
	for _, line := range strings.Split(a.PublicKey, "\n") {
		if len(line) >= 40 { // a base64 line of the armored key
			ud.add("armored key", line)
		}
	}
	return a
}

// loggedIn opens a logged-in WebSocket session for a (docs/accounts.md §7).
func loggedIn(ctx context.Context, t *testing.T, ra relayAccess, ud *userData, a *client.Account) *client.Conn {
	t.Helper()
	h, err := a.TicketHeader(ctx)
	if err != nil {
		t.Fatalf("ticket: %v", err)
	}
	if _, ticket, ok := strings.Cut(h.Get("Cookie"), "ws_ticket="); ok {
		ud.add("ws ticket", ticket)
	}
	return dialWS(ctx, t, ra, h)
}

func dialWS(ctx context.Context, t *testing.T, ra relayAccess, h http.Header) *client.Conn {
	t.Helper()
	c, err := client.Dial(ctx, "ws"+strings.TrimPrefix(ra.url, "http")+"ws", &client.Options{Header: h, NetDialContext: ra.dial})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// joined records what a joined or resumed reply carries that is the users'.
func (u *userData) joined(r *client.Room) {
	u.add("room id", r.ID)
	if r.Cap != "" {
		u.add("capability", r.Cap)
	}
	if r.Resume != "" {
		u.add("resume token", r.Resume)
	}
}

// fileChunk and fileChunks are the browser client's file transfer (docs/client.md "Files"): 32 KiB chunks, at
// most fileWindow unacknowledged, an end-to-end ack ("fack") every fileAckEvery chunks.
const (
	fileChunk    = 32 << 10
	fileChunks   = 12
	fileWindow   = 8
	fileAckEvery = 4
)

// dialog: bob is online, alice opens a dialog with him, he is told and joins, they chat and alice sends a file,
// then bob burns the dialog.
func dialog(ctx context.Context, t *testing.T, ra relayAccess, ud *userData, alice, bob *client.Account) {
	t.Helper()
	b := &member{c: loggedIn(ctx, t, ra, ud, bob)}
	d, err := alice.OpenDialog(ctx, bob.Name)
	if err != nil {
		t.Fatalf("open dialog: %v", err)
	}
	a := &member{c: loggedIn(ctx, t, ra, ud, alice)}
	if a.room, err = a.c.Join(ctx, d.Room, d.Cap); err != nil {
		t.Fatalf("alice joins the dialog: %v", err)
	}
	ud.add("dialog capability", d.Cap)
	ud.joined(a.room)
	ev := nextEvent(ctx, t, b.c, client.KindDialog)
	if ev.Room != d.Room || ev.User != alice.Name {
		t.Fatalf("bob was told of room %q by %q; want %q by %q", ev.Room, ev.User, d.Room, alice.Name)
	}
	if b.room, err = b.c.Join(ctx, ev.Room, ev.Cap); err != nil {
		t.Fatalf("bob joins the dialog: %v", err)
	}
	ud.joined(b.room)
	if ev := nextEvent(ctx, t, a.c, client.KindPresence); ev.Event != "join" || ev.User != bob.Name {
		t.Fatalf("alice saw presence %q of %q; want join of %q", ev.Event, ev.User, bob.Name)
	}

	send := func(m *member, from *client.Account, header map[string]any, body []byte) {
		t.Helper()
		f, err := seal(from, []*openpgp.Entity{alice.Key, bob.Key}, header, body)
		if err != nil {
			t.Fatal(err)
		}
		ud.frame(f)
		if err := m.c.Send(m.room.Ch, f); err != nil {
			t.Fatalf("send: %v", err)
		}
	}
	recv := func(m *member, me, peer *client.Account) (map[string]any, []byte) {
		t.Helper()
		p, err := m.receive(ctx)
		if err != nil {
			t.Fatalf("%s receives: %v", me.Name, err)
		}
		h, body, err := unseal(me.Key, peer.Key, []byte(p))
		if err != nil {
			t.Fatalf("%s opens a frame from %s: %v", me.Name, peer.Name, err)
		}
		return h, body
	}
	for i := range 3 {
		text := fmt.Sprintf("dialog message %d %s", i, rand.Text())
		ud.add("message text", text)
		send(a, alice, map[string]any{"k": "msg", "id": rand.Text(), "text": text, "ts": time.Now().UnixMilli(), "ttl": 0}, nil)
		if h, _ := recv(b, bob, alice); h["text"] != text {
			t.Fatalf("bob read %q, want %q", h["text"], text)
		}
		reply := "reply " + text
		ud.add("message text", reply)
		send(b, bob, map[string]any{"k": "msg", "id": rand.Text(), "text": reply, "ts": time.Now().UnixMilli(), "ttl": 0}, nil)
		if h, _ := recv(a, alice, bob); h["text"] != reply {
			t.Fatalf("alice read %q, want %q", h["text"], reply)
		}
	}

	// The file: bob takes the chunks and acks in a goroutine while alice sends, as two browsers would.
	file := make([]byte, fileChunk*fileChunks)
	rand.Read(file)
	name := "holiday-" + rand.Text()[:8] + ".jpg"
	ud.add("file name", name)
	for i := 0; i < len(file); i += fileChunk {
		ud.samples = append(ud.samples, file[i:i+sampleLen])
	}
	id := rand.Text()
	got := make(chan []byte, 1)
	bobErr := make(chan error, 1)
	go func() {
		defer close(got)
		var out []byte
		for n := 0; n <= fileChunks; n++ { // the header, then the chunks
			p, err := b.receive(ctx)
			if err != nil {
				bobErr <- err
				return
			}
			h, body, err := unseal(bob.Key, alice.Key, []byte(p))
			if err != nil {
				bobErr <- err
				return
			}
			if n == 0 {
				if h["k"] != "file" || h["name"] != name || h["chunks"] != float64(fileChunks) {
					bobErr <- fmt.Errorf("file header %v", h)
					return
				}
				continue
			}
			if h["k"] != "chunk" || h["i"] != float64(n-1) {
				bobErr <- fmt.Errorf("chunk %d has header %v", n-1, h)
				return
			}
			out = append(out, body...)
			if n%fileAckEvery == 0 {
				f, err := seal(bob, []*openpgp.Entity{alice.Key, bob.Key}, map[string]any{"k": "fack", "id": id, "n": n}, nil)
				if err == nil {
					err = b.c.Send(b.room.Ch, f)
				}
				if err != nil {
					bobErr <- err
					return
				}
			}
		}
		got <- out
	}()
	send(a, alice, map[string]any{"k": "file", "id": id, "name": name, "type": "image/jpeg", "size": len(file), "chunks": fileChunks}, nil)
	acked := 0
	for i := range fileChunks {
		for i-acked >= fileWindow {
			h, _ := recv(a, alice, bob)
			if h["k"] != "fack" {
				t.Fatalf("alice expected a fack, got %v", h)
			}
			acked = int(h["n"].(float64))
		}
		send(a, alice, map[string]any{"k": "chunk", "id": id, "i": i}, file[i*fileChunk:(i+1)*fileChunk])
	}
	select {
	case out := <-got:
		if sha256.Sum256(out) != sha256.Sum256(file) {
			t.Fatalf("bob received a file of %d bytes that differs from the %d sent", len(out), len(file))
		}
	case err := <-bobErr:
		t.Fatalf("bob's side of the file transfer: %v", err)
	}

	if err := b.c.Burn(b.room.Ch); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*client.Conn{a.c, b.c} {
		if ev := nextEvent(ctx, t, c, client.KindClosed); ev.Reason != "burned" {
			t.Fatalf("dialog closed with %q, want burned", ev.Reason)
		}
	}
}

// anonymousRooms: a room of three places with frames both ways, a member that drops and resumes, a burn; then a
// room whose only member drops and is left to the grace timer.
func anonymousRooms(ctx context.Context, t *testing.T, ra relayAccess, ud *userData) {
	t.Helper()
	a, b := dialWS(ctx, t, ra, nil), dialWS(ctx, t, ra, nil)
	rA, err := a.Create(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	ud.joined(rA)
	rB, err := b.Join(ctx, rA.ID, rA.Cap)
	if err != nil {
		t.Fatal(err)
	}
	ud.joined(rB)
	for i := range 40 {
		p := make([]byte, 1000+17*i) // ciphertext-like: random, of many sizes
		rand.Read(p)
		ud.frame(p)
		if err := a.Send(rA.Ch, p); err != nil {
			t.Fatal(err)
		}
		q := []byte(fmt.Sprintf("anonymous frame %d %s", i, rand.Text()))
		ud.add("frame payload", string(q))
		ud.frame(q)
		if err := b.Send(rB.Ch, q); err != nil {
			t.Fatal(err)
		}
	}
	mb := &member{c: b, room: rB}
	for range 40 {
		if _, err := mb.receive(ctx); err != nil {
			t.Fatal(err)
		}
	}
	b.Close()
	b2 := dialWS(ctx, t, ra, nil)
	if _, err := b2.Resume(ctx, rB.Resume, mb.last); err != nil {
		t.Fatalf("resume: %v", err)
	}
	if err := a.Burn(rA.Ch); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*client.Conn{a, b2} {
		if ev := nextEvent(ctx, t, c, client.KindClosed); ev.Reason != "burned" {
			t.Fatalf("room closed with %q, want burned", ev.Reason)
		}
	}

	c := dialWS(ctx, t, ra, nil)
	rC, err := c.Create(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	ud.joined(rC)
	c.Close()
	// Twice the grace: through tor the relay learns of the drop only when tor closes the stream.
	time.Sleep(2*ra.grace + 500*time.Millisecond)
	c2 := dialWS(ctx, t, ra, nil)
	var re *client.Error
	if _, err := c2.Resume(ctx, rC.Resume, 0); !errors.As(err, &re) || re.Code != "bad_token" {
		t.Fatalf("resume after the grace: %v; want bad_token (the room should be gone)", err)
	}
}

// nextEvent waits for c's next event of kind k, skipping others (a lost frame fails the test).
func nextEvent(ctx context.Context, t *testing.T, c *client.Conn, k client.Kind) client.Event {
	t.Helper()
	for {
		select {
		case ev, ok := <-c.Events():
			if !ok {
				t.Fatalf("connection ended waiting for event kind %d: %v", k, c.Err())
			}
			if ev.Kind == client.KindLost {
				t.Fatalf("frames %d..%d lost", ev.LostFrom, ev.LostTo)
			}
			if ev.Kind == k {
				return ev
			}
		case <-ctx.Done():
			t.Fatalf("waiting for event kind %d: %v", k, ctx.Err())
		}
	}
}

// padBuckets are the browser client's plaintext sizes (static/js/pad.mjs).
var padBuckets = []int{256, 1024, 4096, 16384, 40960}

// seal makes a message frame as the browser client does (docs/client.md "What goes on the wire"): the kind byte
// 0x02, then an OpenPGP message signed by from and encrypted to every key in to, of the padded envelope
// (u32 length ‖ u16 header length ‖ JSON header ‖ body ‖ zeros to a bucket).
func seal(from *client.Account, to []*openpgp.Entity, header map[string]any, body []byte) ([]byte, error) {
	h, err := json.Marshal(header)
	if err != nil {
		return nil, err
	}
	n := 2 + len(h) + len(body)
	size := 0
	for _, b := range padBuckets {
		if n+4 <= b {
			size = b
			break
		}
	}
	if size == 0 {
		return nil, fmt.Errorf("failed to pad %d bytes", n)
	}
	plain := make([]byte, size)
	binary.BigEndian.PutUint32(plain, uint32(n))
	binary.BigEndian.PutUint16(plain[4:], uint16(len(h)))
	copy(plain[6:], h)
	copy(plain[6+len(h):], body)
	out := bytes.NewBuffer([]byte{0x02})
	w, err := openpgp.Encrypt(out, to, from.Key, &openpgp.FileHints{IsBinary: true}, nil)
	if err != nil {
		return nil, fmt.Errorf("failed to encrypt: %w", err)
	}
	w.Write(plain)
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("failed to encrypt: %w", err)
	}
	return out.Bytes(), nil
}

// unseal opens a frame made by seal with the private key me, checks it is signed by peer, and returns its
// header and body.
func unseal(me, peer *openpgp.Entity, frame []byte) (map[string]any, []byte, error) {
	if len(frame) < 2 || frame[0] != 0x02 {
		return nil, nil, errors.New("not a message frame")
	}
	md, err := openpgp.ReadMessage(bytes.NewReader(frame[1:]), openpgp.EntityList{me, peer}, nil, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("failed to decrypt: %w", err)
	}
	plain, err := io.ReadAll(md.UnverifiedBody)
	if err != nil {
		return nil, nil, fmt.Errorf("failed to decrypt: %w", err)
	}
	if md.SignatureError != nil || md.SignedBy == nil || md.SignedBy.Entity != peer {
		return nil, nil, fmt.Errorf("not signed by the peer: %v", md.SignatureError)
	}
	if len(plain) < 6 {
		return nil, nil, errors.New("short envelope")
	}
	n := int(binary.BigEndian.Uint32(plain))
	hl := int(binary.BigEndian.Uint16(plain[4:]))
	if n+4 > len(plain) || hl+2 > n {
		return nil, nil, errors.New("bad envelope lengths")
	}
	var h map[string]any
	if err := json.Unmarshal(plain[6:6+hl], &h); err != nil {
		return nil, nil, fmt.Errorf("bad envelope header: %w", err)
	}
	return h, plain[6+hl : 4+n], nil
}

// logKeys are the only attributes the relay's log lines may carry: counters, reasons and tor's progress. A
// member, room, user, channel or size attribute is a failure whatever its value; a new key must be added here
// knowingly, after checking it cannot carry user data.
var logKeys = map[string]bool{
	"time": true, "level": true, "msg": true, "err": true, "why": true, "reason": true, "component": true,
	"tor_version": true, "warning": true, "step": true,
	"node": true, "peer": true, "synced": true, // cluster: the operator's node names
}

// logCounters are the other attributes the relay may log: counts and limits, numbers by design.
var logCounters = map[string]bool{
	"connections_open": true, "rooms_open": true, "connections_served": true, "rooms_created": true,
	"frames_forwarded": true, "limit": true, "percent": true, "retry_in": true,
	"peers": true, "missing": true, "took": true, // cluster
}

// checkNoUserData fails the test if the relay's stdout or stderr carries anything of the users' (ud), or a log
// attribute outside logKeys, or a line that is not a log record.
func checkNoUserData(t *testing.T, stdout, stderr string, ud *userData) {
	t.Helper()
	out := stdout + stderr
	leaks := map[string][]string{} // by kind, to report a few of each
	leak := func(kind, format string, args ...any) {
		leaks[kind] = append(leaks[kind], fmt.Sprintf(format, args...))
	}
	for i, s := range ud.texts {
		if strings.Contains(out, s) {
			leak("user data", "a %s: %q", ud.what[i], s)
		}
	}
	for _, p := range ud.samples {
		encs := []string{string(p), hex.EncodeToString(p)}
		// A piece of a longer base64 text is found only at its own alignment (3 bytes to 4 characters): one of
		// the three 15-byte windows lines up with whatever offset the logged bytes started at.
		for j := range 3 {
			w := p[j : j+15]
			encs = append(encs, base64.StdEncoding.EncodeToString(w), base64.RawURLEncoding.EncodeToString(w))
		}
		for _, enc := range encs {
			if strings.Contains(out, enc) {
				leak("payload", "payload bytes: %q", enc)
			}
		}
	}
	for _, line := range strings.Split(strings.TrimSpace(stdout), "\n") {
		if !strings.HasPrefix(line, "cleanrelay: serving on ") {
			leak("stdout", "an unexpected line on stdout: %q", clip(line, 200))
		}
	}
	// Whole numbers only: digits inside hex or base64 are no size.
	number := regexp.MustCompile(`\b\d+\b`)
	lines := 0
	for _, line := range strings.Split(strings.TrimSpace(stderr), "\n") {
		attrs, err := parseLogLine(line)
		if err != nil {
			leak("stderr", "a stderr line that is not a log record (%v): %q", err, clip(line, 200))
			continue
		}
		lines++
		for k := range attrs {
			if !logKeys[k] && !logCounters[k] {
				leak("attribute", "log attribute %q, not one the relay may log: %q", k, clip(line, 200))
			}
		}
		if attrs["component"] == "tor" {
			continue // tor's own lines carry its ports and byte counts; the texts above are checked in them
		}
		// The relay has no business with sizes: a number in the message, an error or a reason that is a frame
		// size the session used is a leak. Counters and the time are numbers by design, and are left out.
		for k, v := range attrs {
			if k == "time" || logCounters[k] {
				continue
			}
			for _, m := range number.FindAllString(v, -1) {
				if n, _ := strconv.Atoi(m); n >= 10 && ud.sizes[n] > 0 {
					leak("size", "a frame size (%d) in %s: %q", n, k, clip(line, 200))
				}
			}
		}
	}
	for _, kind := range []string{"user data", "payload", "attribute", "size", "stdout", "stderr"} {
		if l := leaks[kind]; len(l) > 0 {
			t.Errorf("the relay's output carries %s (%d times), e.g.:\n%s", kind, len(l), strings.Join(l[:min(len(l), 5)], "\n"))
		}
	}
	t.Logf("checked %d log lines and %d bytes of stdout for %d user strings, %d payload samples and %d frame sizes",
		lines, len(stdout), len(ud.texts), len(ud.samples), len(ud.sizes))
}

// parseLogLine splits one line of slog's text format into its attributes.
func parseLogLine(line string) (map[string]string, error) {
	attrs := map[string]string{}
	for rest := line; rest != ""; {
		k, v, ok := strings.Cut(rest, "=")
		if !ok || k == "" || strings.ContainsAny(k, " \"") {
			return nil, fmt.Errorf("no key=value at %q", rest)
		}
		if strings.HasPrefix(v, `"`) {
			q, err := strconv.QuotedPrefix(v)
			if err != nil {
				return nil, fmt.Errorf("bad quoted value of %s", k)
			}
			attrs[k], _ = strconv.Unquote(q)
			v = v[len(q):]
		} else {
			val, after, _ := strings.Cut(v, " ")
			attrs[k] = val
			v = " " + after
			if after == "" {
				v = ""
			}
		}
		if v != "" && v[0] != ' ' {
			return nil, fmt.Errorf("no space after %s", k)
		}
		rest = strings.TrimPrefix(v, " ")
	}
	if attrs["time"] == "" || attrs["level"] == "" {
		return nil, errors.New("no time or level")
	}
	return attrs, nil
}
