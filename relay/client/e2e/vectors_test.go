package e2e

import (
	"bufio"
	"bytes"
	"crypto/mlkem"
	"crypto/mlkem/mlkemtest"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
)

var update = flag.Bool("update", false, "rewrite testdata/e2e/go-*.txt")

const vectorDir = "../../../testdata/e2e"

// A vector is one file of testdata/e2e: "key: value" lines, some keys repeatable (docs/e2e.md §12).
type vector struct {
	name string
	one  map[string]string
	many map[string][]string
}

var vectorKeys = map[string]bool{ // true: may repeat
	"kind": false, "expect": false, "producer": false, "comment": false, "room": false, "user": false,
	"member": true, "keypackage": true, "committer": false, "epoch": false, "prev": false, "secret": false,
	"ephemeral": false, "wrap": true, "commit": true, "epoch id": false, "message": true, "invite secret": false,
	"identity": true, "pgp public": false, "plaintext": false, "item": true,
}

func readVector(t *testing.T, path string) vector {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	v := vector{name: filepath.Base(path), one: map[string]string{}, many: map[string][]string{}}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		k, val, ok := strings.Cut(sc.Text(), ": ")
		if !ok {
			t.Fatalf("%s: line %q is not key: value", v.name, sc.Text())
		}
		rep, known := vectorKeys[k]
		if !known {
			t.Fatalf("%s: unknown header %q", v.name, k)
		}
		if rep {
			v.many[k] = append(v.many[k], val)
		} else if _, dup := v.one[k]; dup {
			t.Fatalf("%s: header %q twice", v.name, k)
		} else {
			v.one[k] = val
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return v
}

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("bad hex %q…: %v", s[:min(len(s), 16)], err)
	}
	return b
}

func num(t *testing.T, s string) uint32 {
	t.Helper()
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		t.Fatal(err)
	}
	return uint32(n)
}

// errClass names the error classes the vectors use, shared with the JavaScript implementation.
func errClass(err error) string {
	if err == nil {
		return "ok"
	}
	if c := errClassOf(err); c != "" {
		return c
	}
	return "other: " + err.Error()
}

type member struct {
	id   uint32
	sig  Ed25519Identity
	kp   *KeyPackage
	priv *KeyPackagePrivate
}

// members reads "member: id identitySeed x25519Seed mlkemSeed [n]" lines and makes each key package
// under kind and ctx.
func members(t *testing.T, v vector, kind string, ctx []byte) map[uint32]*member {
	t.Helper()
	out := map[uint32]*member{}
	for _, l := range v.many["member"] {
		f := strings.Fields(l)
		n := uint32(1)
		if len(f) == 5 {
			n = num(t, f[4])
		}
		m := &member{id: num(t, f[0]), sig: NewEd25519Identity(unhex(t, f[1]))}
		var err error
		m.kp, m.priv, err = NewKeyPackage(m.sig, kind, ctx, m.id, n, unhex(t, f[2]), unhex(t, f[3]))
		if err != nil {
			t.Fatal(err)
		}
		out[m.id] = m
	}
	return out
}

// replay returns an Encapsulator that uses the vector's "wrap" randomness for each key.
func replay(t *testing.T, v vector, kps map[uint32]*member) Encapsulator {
	byEK := map[string][]byte{}
	for _, l := range v.many["wrap"] {
		f := strings.Fields(l)
		byEK[string(kps[num(t, f[0])].kp.EK)] = unhex(t, f[1])
	}
	return func(ek *mlkem.EncapsulationKey768) ([]byte, []byte, error) {
		r, ok := byEK[string(ek.Bytes())]
		if !ok {
			return nil, nil, fmt.Errorf("no randomness for this key")
		}
		return mlkemtest.Encapsulate768(ek, r)
	}
}

func TestVectors(t *testing.T) {
	if *update {
		writeVectors(t)
	}
	files, _ := filepath.Glob(filepath.Join(vectorDir, "*.txt"))
	if len(files) < 9 {
		t.Fatalf("only %d vectors in %s", len(files), vectorDir)
	}
	producers := map[string]int{}
	for _, path := range files {
		v := readVector(t, path)
		producers[v.one["producer"]]++
		t.Run(v.name, func(t *testing.T) {
			switch v.one["kind"] {
			case "session":
				runSession(t, v)
			case "keypackage":
				runKeyPackage(t, v)
			case "open-commit", "prekey":
				runOpenCommit(t, v)
			case "history":
				runHistory(t, v)
			case "identity":
				runIdentity(t, v)
			case "pgp-keypackage":
				runPGPKeyPackage(t, v)
			case "mail-item":
				runMailItem(t, v)
			default:
				t.Fatalf("unknown kind %q", v.one["kind"])
			}
		})
	}
	if producers["go"] == 0 || producers["js"] == 0 {
		t.Fatalf("vectors by producer: %v; want some made by go and some by js", producers)
	}
}

func checkBytes(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		t.Fatalf("%s differs:\n got %x…\nwant %x…", what, got[:min(len(got), 24)], want[:min(len(want), 24)])
	}
}

func checkClass(t *testing.T, what string, err error, want string) {
	t.Helper()
	if got := errClass(err); got != want {
		t.Fatalf("%s: got %s, want %s", what, got, want)
	}
}

// sessionCommit rebuilds the commit of a session or open-commit vector from its inputs.
func sessionCommit(t *testing.T, v vector, ctx []byte, ms map[uint32]*member, to []*KeyPackage) *Commit {
	t.Helper()
	committer := ms[num(t, v.one["committer"])]
	var prev [HashSize]byte
	copy(prev[:], unhex(t, v.one["prev"]))
	ch := [HashSize]byte{}
	if committer.kp != nil && v.one["kind"] != "prekey" {
		ch = committer.kp.Hash()
	}
	c, err := NewCommit(committer.sig, CommitParams{
		Ctx: ctx, Epoch: num(t, v.one["epoch"]), Prev: prev, Committer: committer.id, CommitterHash: ch,
		To: to, Secret: unhex(t, v.one["secret"]), EphemeralSeed: unhex(t, v.one["ephemeral"]), Encapsulate: replay(t, v, ms),
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func runSession(t *testing.T, v vector) {
	ctx := []byte(v.one["room"])
	ms := members(t, v, "keypackage", ctx)
	for _, l := range v.many["keypackage"] {
		f := strings.Fields(l)
		m := ms[num(t, f[0])]
		checkBytes(t, "key package of "+f[0], m.kp.Bytes(), unhex(t, f[1]))
		if _, err := ParseKeyPackage(unhex(t, f[1]), "keypackage", ctx, m.sig.Public()); err != nil {
			t.Fatal(err)
		}
	}
	committer := num(t, v.one["committer"])
	var to []*KeyPackage
	for id, m := range ms {
		if id != committer {
			to = append(to, m.kp)
		}
	}
	c := sessionCommit(t, v, ctx, ms, to)
	want := unhex(t, v.many["commit"][0])
	checkBytes(t, "commit", c.Bytes(), want)
	id := c.ID(ctx)
	checkBytes(t, "epoch id", id[:], unhex(t, v.one["epoch id"]))
	secret := unhex(t, v.one["secret"])
	ids := slices.Sorted(func(yield func(uint32) bool) {
		for id := range ms {
			if !yield(id) {
				return
			}
		}
	})
	epochs := map[uint32]*Epoch{}
	for _, mid := range ids {
		got := secret
		if mid != committer {
			pc, err := ParseCommit(want, ctx, ms[committer].sig.Public())
			if err != nil {
				t.Fatal(err)
			}
			got, err = pc.Open(ctx, ms[mid].kp, ms[mid].priv)
			if err != nil {
				t.Fatalf("member %d: %v", mid, err)
			}
			checkHybrid(t, v, ctx, pc, ms[mid])
		}
		checkBytes(t, fmt.Sprintf("secret of %d", mid), got, secret)
		epochs[mid] = NewEpoch(c.Epoch, id, got, ids)
	}
	// Senders seal in order of n; tampered and replayed lines carry their own bytes.
	type msg struct {
		sender, n uint32
		result    string
		pt, ct    []byte
	}
	var msgs []msg
	for _, l := range v.many["message"] {
		f := strings.Fields(l)
		pt := []byte{}
		if f[3] != "-" {
			pt = unhex(t, f[3])
		}
		msgs = append(msgs, msg{num(t, f[0]), num(t, f[1]), f[2], pt, unhex(t, f[4])})
	}
	sent := slices.Clone(msgs)
	slices.SortStableFunc(sent, func(a, b msg) int { return int(a.n) - int(b.n) })
	seen := map[[2]uint32]bool{}
	for _, m := range sent {
		if m.result != "ok" && m.result != "dropped" && !strings.HasPrefix(m.result, "missing=") || seen[[2]uint32{m.sender, m.n}] {
			continue
		}
		seen[[2]uint32{m.sender, m.n}] = true
		ct, err := epochs[m.sender].Seal(m.sender, m.pt)
		if err != nil {
			t.Fatal(err)
		}
		checkBytes(t, fmt.Sprintf("message %d/%d", m.sender, m.n), ct, m.ct)
	}
	for _, rid := range ids {
		for _, m := range msgs {
			if m.sender == rid || m.result == "dropped" {
				continue
			}
			pt, missing, err := epochs[rid].Open(m.sender, m.ct)
			got := errClass(err)
			if err == nil && missing > 0 {
				got = fmt.Sprintf("missing=%d", missing)
			}
			if got != m.result {
				t.Fatalf("member %d opening %d/%d: got %s, want %s", rid, m.sender, m.n, got, m.result)
			}
			if err == nil {
				checkBytes(t, "plaintext", pt, m.pt)
			}
		}
	}
}

// checkHybrid shows that the wrap needs both halves: the vector's X25519 secret with a wrong ML-KEM
// secret, or the reverse, does not open it.
func checkHybrid(t *testing.T, v vector, ctx []byte, c *Commit, m *member) {
	t.Helper()
	for _, l := range v.many["wrap"] {
		f := strings.Fields(l)
		if num(t, f[0]) != m.id {
			continue
		}
		dh, ss := unhex(t, f[2]), unhex(t, f[3])
		i := c.Find(m.id)
		h := m.kp.Hash()
		k := func(dh, ss []byte) []byte { return WrapKey(ctx, c.Epoch, m.id, h, c.E, c.CT[i], dh, ss) }
		if _, err := OpenWrapped(k(dh, ss), c.Wrapped[i], c.Epoch); err != nil {
			t.Fatalf("the vector's shared secrets do not open the wrap of %d: %v", m.id, err)
		}
		known := make([]byte, 32) // the broken half, replaced by a value the attacker knows
		if _, err := OpenWrapped(k(dh, known), c.Wrapped[i], c.Epoch); !errors.Is(err, ErrForged) {
			t.Fatalf("X25519 alone opened the wrap of %d", m.id)
		}
		if _, err := OpenWrapped(k(known, ss), c.Wrapped[i], c.Epoch); !errors.Is(err, ErrForged) {
			t.Fatalf("ML-KEM alone opened the wrap of %d", m.id)
		}
		return
	}
	t.Fatalf("no wrap line for member %d", m.id)
}

func runKeyPackage(t *testing.T, v vector) {
	ctx := []byte(v.one["room"])
	ms := members(t, v, "keypackage", ctx)
	for _, l := range v.many["keypackage"] {
		f := strings.Fields(l)
		_, err := ParseKeyPackage(unhex(t, f[1]), "keypackage", ctx, ms[num(t, f[0])].sig.Public())
		checkClass(t, "key package", err, v.one["expect"])
	}
}

// runOpenCommit opens the vector's commits one after the other as the member that is not the
// committer; the last one must give the expected result, every earlier one must open. A prekey is
// deleted after its first use, as a client does.
func runOpenCommit(t *testing.T, v vector) {
	kind, ctx := "keypackage", []byte(v.one["room"])
	if v.one["kind"] == "prekey" {
		kind, ctx = "prekey", []byte("prekey:"+v.one["user"])
	}
	ms := members(t, v, kind, ctx)
	committer := ms[num(t, v.one["committer"])]
	var self *member
	for _, m := range ms {
		if m != committer {
			self = m
		}
	}
	commits := v.many["commit"]
	for i, hx := range commits {
		c, err := ParseCommit(unhex(t, hx), ctx, committer.sig.Public())
		var s []byte
		if err == nil {
			s, err = c.Open(ctx, self.kp, self.priv)
		}
		if kind == "prekey" && err == nil {
			self.priv.Wipe()
		}
		if i < len(commits)-1 || v.one["expect"] == "ok" {
			checkClass(t, fmt.Sprintf("commit %d", i), err, "ok")
			checkBytes(t, "secret", s, unhex(t, v.one["secret"]))
			continue
		}
		checkClass(t, fmt.Sprintf("commit %d", i), err, v.one["expect"])
	}
}

// runHistory feeds "commit: committer hex" lines to a History as a member outside every epoch would
// see them; all but the last must be accepted, the last must give the expected result.
func runHistory(t *testing.T, v vector) {
	ctx := []byte(v.one["room"])
	ms := members(t, v, "keypackage", ctx)
	var h History
	commits := v.many["commit"]
	for i, l := range commits {
		f := strings.Fields(l)
		c, err := ParseCommit(unhex(t, f[1]), ctx, ms[num(t, f[0])].sig.Public())
		if err == nil {
			err = h.Check(c)
		}
		want := "ok"
		if i == len(commits)-1 {
			want = v.one["expect"]
		}
		checkClass(t, fmt.Sprintf("commit %d", i), err, want)
		if err == nil {
			h.Accept(ctx, c)
		}
	}
}

// runIdentity opens "identity: from hex" announcements under the invite secret.
func runIdentity(t *testing.T, v vector) {
	room := v.one["room"]
	ms := members(t, v, "keypackage", []byte(room))
	key := InviteKey(unhex(t, v.one["invite secret"]), room)
	for _, l := range v.many["identity"] {
		f := strings.Fields(l)
		id, err := OpenIdentity(key, room, num(t, f[0]), unhex(t, f[1]))
		checkClass(t, "identity", err, v.one["expect"])
		if err == nil {
			checkBytes(t, "identity key", id.Public, ms[id.Member].sig.Public())
		}
	}
}

// seed returns deterministic test bytes.
func seed(name string, n int) []byte {
	var out []byte
	for i := 0; len(out) < n; i++ {
		h := sha256.Sum256([]byte(fmt.Sprintf("cleanrelay test seed %s %d", name, i)))
		out = append(out, h[:]...)
	}
	return out[:n]
}

func hexDecode(s string) ([]byte, error) { return hex.DecodeString(s) }

// runPGPKeyPackage checks key packages signed by an OpenPGP identity (dialogs) against its public key.
func runPGPKeyPackage(t *testing.T, v vector) {
	ring, err := openpgp.ReadKeyRing(bytes.NewReader(unhex(t, v.one["pgp public"])))
	if err != nil || len(ring) != 1 {
		t.Fatalf("pgp public: %v (%d keys)", err, len(ring))
	}
	for _, l := range v.many["keypackage"] {
		f := strings.Fields(l)
		_, err := ParseKeyPackage(unhex(t, f[1]), "keypackage", []byte(v.one["room"]), PGPPublic{ring[0]})
		checkClass(t, "key package", err, v.one["expect"])
	}
}
