package e2e

import (
	"bytes"
	"crypto/ecdh"
	"crypto/mlkem"
	"crypto/mlkem/mlkemtest"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// vecWriter collects the lines of one vector file.
type vecWriter struct{ lines []string }

// newVec starts a vector made by Go with its kind, expected result and, when not empty, a comment.
func newVec(kind, expect, comment string) *vecWriter {
	w := &vecWriter{}
	w.add("kind", "%s", kind)
	w.add("expect", "%s", expect)
	w.add("producer", "go")
	if comment != "" {
		w.add("comment", "%s", comment)
	}
	return w
}

func (w *vecWriter) add(k, f string, a ...any) {
	w.lines = append(w.lines, k+": "+fmt.Sprintf(f, a...))
}

func (w *vecWriter) write(t *testing.T, name string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(vectorDir, name), []byte(strings.Join(w.lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

type genMember struct {
	id                   uint32
	idSeed, xSeed, kSeed []byte
	n                    uint32
	sig                  Ed25519Identity
	kp                   *KeyPackage
	priv                 *KeyPackagePrivate
}

func genMembers(t *testing.T, w *vecWriter, tag, kind string, ctx []byte, ids ...uint32) map[uint32]*genMember {
	out := map[uint32]*genMember{}
	for _, id := range ids {
		m := &genMember{id: id, n: 1, idSeed: seed(fmt.Sprintf("%s id %d", tag, id), 32), xSeed: seed(fmt.Sprintf("%s x %d", tag, id), 32), kSeed: seed(fmt.Sprintf("%s kem %d", tag, id), 64)}
		m.sig = NewEd25519Identity(m.idSeed)
		var err error
		if m.kp, m.priv, err = NewKeyPackage(m.sig, kind, ctx, id, 1, m.xSeed, m.kSeed); err != nil {
			t.Fatal(err)
		}
		w.add("member", "%d %x %x %x", id, m.idSeed, m.xSeed, m.kSeed)
		out[id] = m
	}
	return out
}

// genCommit makes a commit from committer to the key packages to, writing its inputs as headers.
func genCommit(t *testing.T, w *vecWriter, tag string, ctx []byte, epoch uint32, prev [HashSize]byte, committer *genMember, committerHash [HashSize]byte, to ...*KeyPackage) *Commit {
	secret, eph := seed(tag+" secret", 32), seed(tag+" eph", 32)
	w.add("committer", "%d", committer.id)
	w.add("epoch", "%d", epoch)
	w.add("prev", "%x", prev)
	w.add("secret", "%x", secret)
	w.add("ephemeral", "%x", eph)
	e, _ := ecdh.X25519().NewPrivateKey(eph)
	for _, kp := range to {
		r := seed(fmt.Sprintf("%s kem random %d", tag, kp.Member), 32)
		pub, _ := ecdh.X25519().NewPublicKey(kp.X)
		dh, _ := e.ECDH(pub)
		ek, _ := mlkem.NewEncapsulationKey768(kp.EK)
		ss, _, _ := mlkemtest.Encapsulate768(ek, r)
		w.add("wrap", "%d %x %x %x", kp.Member, r, dh, ss)
	}
	rs := map[string][]byte{}
	for _, kp := range to {
		rs[string(kp.EK)] = seed(fmt.Sprintf("%s kem random %d", tag, kp.Member), 32)
	}
	c, err := NewCommit(committer.sig, CommitParams{Ctx: ctx, Epoch: epoch, Prev: prev, Committer: committer.id, CommitterHash: committerHash,
		To: to, Secret: secret, EphemeralSeed: eph, Encapsulate: func(ek *mlkem.EncapsulationKey768) ([]byte, []byte, error) {
			return mlkemtest.Encapsulate768(ek, rs[string(ek.Bytes())])
		}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func writeVectors(t *testing.T) {
	if err := os.MkdirAll(vectorDir, 0o755); err != nil {
		t.Fatal(err)
	}
	genSession(t, "go-session-pair.txt", "pair", "Go0pairRoomAAAAAAAAAAA", 1, [HashSize]byte{}, []uint32{1, 2}, 1)
	genSession(t, "go-session-group.txt", "group", "Go0groupRoomAAAAAAAAAA", 7, sum([]byte("previous epoch")), []uint32{2, 3, 9}, 3)
	genForgedKeyPackage(t)
	genSwapped(t)
	genPrekey(t)
	genHistory(t, "go-history-old-epoch.txt", "old-epoch")
	genHistory(t, "go-history-fork.txt", "fork")
	genIdentity(t)
	genPGPKeyPackage(t, "pgp", &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA})
	genPGPKeyPackage(t, "pgp6", &packet.Config{V6Keys: true, Algorithm: packet.PubKeyAlgoEd25519})
	genMailItem(t)
}

// genPGPKeyPackage: key packages signed by an OpenPGP identity made with cfg (pgp: a v4 EdDSA key; pgp6: an
// RFC 9580 v6 Ed25519 key), as dialogs sign them; the second vector's key package was altered after signing.
func genPGPKeyPackage(t *testing.T, name string, cfg *packet.Config) {
	e, err := openpgp.NewEntity("go dialog user", "", "", cfg)
	if err != nil {
		t.Fatal(err)
	}
	var pub bytes.Buffer
	if err := e.Serialize(&pub); err != nil {
		t.Fatal(err)
	}
	room := "Go0dialogRoomAAAAAAAAA"
	kp, _, err := NewKeyPackage(PGPIdentity{e}, "keypackage", []byte(room), 1, 1, seed("pgp x", 32), seed("pgp kem", 64))
	if err != nil {
		t.Fatal(err)
	}
	for _, expect := range []string{"ok", "forged"} {
		w := newVec("pgp-keypackage", expect, fmt.Sprintf("a key package signed with an OpenPGP v%d key (not reproducible: OpenPGP signatures carry a time)", e.PrimaryKey.Version))
		w.add("room", "%s", room)
		w.add("pgp public", "%x", pub.Bytes())
		b := bytes.Clone(kp.Bytes())
		if expect == "forged" {
			b[12] ^= 1
		}
		w.add("keypackage", "1 %x", b)
		w.write(t, "go-"+name+"-keypackage-"+expect+".txt")
	}
}

func genSession(t *testing.T, file, tag, room string, epoch uint32, prev [HashSize]byte, ids []uint32, committer uint32) {
	w := newVec("session", "ok", "")
	w.add("comment", "members %v; committer %d; messages delivered out of order, one dropped for good, one replayed, one tampered", ids, committer)
	w.add("room", "%s", room)
	ctx := []byte(room)
	ms := genMembers(t, w, tag, "keypackage", ctx, ids...)
	var to []*KeyPackage
	for _, id := range ids {
		w.add("keypackage", "%d %x", id, ms[id].kp.Bytes())
		if id != committer {
			to = append(to, ms[id].kp)
		}
	}
	c := genCommit(t, w, tag, ctx, epoch, prev, ms[committer], ms[committer].kp.Hash(), to...)
	w.add("commit", "%x", c.Bytes())
	id := c.ID(ctx)
	w.add("epoch id", "%x", id)
	e := NewEpoch(epoch, id, seed(tag+" secret", 32), ids)
	a, b := ids[0], ids[1]
	seal := func(s uint32, text string) []byte {
		ct, err := e.Seal(s, []byte(text))
		if err != nil {
			t.Fatal(err)
		}
		return ct
	}
	a0, b0 := seal(a, "hello"), seal(b, "привет")
	a1, a2, a3, a4 := seal(a, ""), seal(a, strings.Repeat("x", 300)), seal(a, "four"), seal(a, "five")
	b1 := seal(b, "bye")
	tampered := append([]byte(nil), b1...)
	tampered[len(tampered)-1] ^= 1
	line := func(s, n uint32, result, pt string, ct []byte) {
		p := "-"
		if pt != "" {
			p = fmt.Sprintf("%x", pt)
		}
		w.add("message", "%d %d %s %s %x", s, n, result, p, ct)
	}
	line(a, 0, "ok", "hello", a0)
	line(b, 0, "ok", "привет", b0)
	line(a, 2, "missing=1", strings.Repeat("x", 300), a2)
	line(a, 1, "ok", "", a1) // reordered: its key was kept when 2 came first
	line(a, 1, "replayed", "", a1)
	line(a, 3, "dropped", "four", a3) // sealed, never delivered
	line(a, 4, "missing=1", "five", a4)
	line(b, 1, "forged", "", tampered)
	line(b, 1, "ok", "bye", b1)
	w.write(t, file)
}

func genForgedKeyPackage(t *testing.T) {
	w := newVec("keypackage", "forged", "the relay swapped the X25519 key of a signed key package for its own")
	room := "Go0swapRoomAAAAAAAAAAA"
	w.add("room", "%s", room)
	ms := genMembers(t, w, "forged", "keypackage", []byte(room), 4)
	b := append([]byte(nil), ms[4].kp.Bytes()...)
	evil, _ := ecdh.X25519().NewPrivateKey(seed("relay", 32))
	copy(b[9:], evil.PublicKey().Bytes())
	w.add("keypackage", "4 %x", b)
	w.write(t, "go-keypackage-forged.txt")
}

// genSwapped: the committer was handed another signed key package of member 2 (one it had already
// been sent earlier, say) than the one member 2 holds now; member 2 refuses the commit.
func genSwapped(t *testing.T) {
	w := newVec("open-commit", "swapped", "the commit names a key package of member 2 other than the one member 2 holds")
	room := "Go0swapRoomBBBBBBBBBBB"
	w.add("room", "%s", room)
	ctx := []byte(room)
	ms := genMembers(t, w, "swapped", "keypackage", ctx, 1, 2)
	other, _, _ := NewKeyPackage(ms[2].sig, "keypackage", ctx, 2, 2, seed("other x", 32), seed("other kem", 64))
	c := genCommitTo(t, w, "swapped", ctx, ms[1], other)
	w.add("commit", "%x", c.Bytes())
	w.write(t, "go-commit-swapped.txt")
}

func genCommitTo(t *testing.T, w *vecWriter, tag string, ctx []byte, committer *genMember, to *KeyPackage) *Commit {
	secret, eph := seed(tag+" secret", 32), seed(tag+" eph", 32)
	w.add("committer", "%d", committer.id)
	w.add("secret", "%x", secret)
	c, err := NewCommit(committer.sig, CommitParams{Ctx: ctx, Epoch: 1, Committer: committer.id, To: []*KeyPackage{to},
		Secret: secret, EphemeralSeed: eph, Encapsulate: func(ek *mlkem.EncapsulationKey768) ([]byte, []byte, error) {
			return mlkemtest.Encapsulate768(ek, seed(tag+" kem random", 32))
		}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// genPrekey: an offline message's commit to a one-time prekey, delivered twice; the second use is
// refused because the prekey's private half was deleted on first use.
func genPrekey(t *testing.T) {
	w := newVec("prekey", "replayed", "member 1 (sender) reaches member 2 through prekey number 17 of user alice; the relay replays it")
	w.add("user", "alice")
	ctx := []byte("prekey:alice")
	ms := map[uint32]*genMember{}
	for _, id := range []uint32{1, 2} {
		m := &genMember{id: id, idSeed: seed(fmt.Sprintf("prekey id %d", id), 32), xSeed: seed(fmt.Sprintf("prekey x %d", id), 32), kSeed: seed(fmt.Sprintf("prekey kem %d", id), 64)}
		m.sig = NewEd25519Identity(m.idSeed)
		m.kp, m.priv, _ = NewKeyPackage(m.sig, "prekey", ctx, id, 17, m.xSeed, m.kSeed)
		w.add("member", "%d %x %x %x 17", id, m.idSeed, m.xSeed, m.kSeed)
		ms[id] = m
	}
	c := genCommitTo(t, w, "prekey", ctx, ms[1], ms[2].kp)
	w.add("commit", "%x", c.Bytes())
	w.add("commit", "%x", c.Bytes())
	w.write(t, "go-prekey-replayed.txt")
}

// genHistory: epochs 1 and 2 between members 1 and 2, then either epoch 1 again (old-epoch) or an
// epoch 3 that does not follow epoch 2 (fork).
func genHistory(t *testing.T, file, expect string) {
	w := newVec("history", expect, "")
	room := "Go0historyRoomAAAAAAAA"
	w.add("room", "%s", room)
	ctx := []byte(room)
	ms := genMembers(t, w, "history", "keypackage", ctx, 1, 2)
	kp2, _, _ := NewKeyPackage(ms[2].sig, "keypackage", ctx, 2, 2, seed("history x2", 32), seed("history kem2", 64))
	kp3, _, _ := NewKeyPackage(ms[2].sig, "keypackage", ctx, 2, 3, seed("history x3", 32), seed("history kem3", 64))
	mk := func(epoch uint32, prev [HashSize]byte, to *KeyPackage) *Commit {
		c, err := NewCommit(ms[1].sig, CommitParams{Ctx: ctx, Epoch: epoch, Prev: prev, Committer: 1, CommitterHash: ms[1].kp.Hash(), To: []*KeyPackage{to},
			Secret: seed(fmt.Sprint("history secret ", epoch), 32), EphemeralSeed: seed(fmt.Sprint("history eph ", epoch), 32), Encapsulate: func(ek *mlkem.EncapsulationKey768) ([]byte, []byte, error) {
				return mlkemtest.Encapsulate768(ek, seed(fmt.Sprint("history r ", epoch), 32))
			}})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	c1 := mk(1, [HashSize]byte{}, ms[2].kp)
	c2 := mk(2, c1.ID(ctx), kp2)
	w.add("commit", "1 %x", c1.Bytes())
	w.add("commit", "1 %x", c2.Bytes())
	if expect == "old-epoch" {
		w.add("comment", "the relay replays the commit of epoch 1 after epoch 2")
		w.add("commit", "1 %x", c1.Bytes())
	} else {
		w.add("comment", "epoch 3 names epoch 1 as its predecessor")
		w.add("commit", "1 %x", mk(3, c1.ID(ctx), kp3).Bytes())
	}
	w.write(t, file)
}

// genIdentity: announcements under the invite secret; the last names a member other than its sender.
func genIdentity(t *testing.T) {
	for _, expect := range []string{"ok", "forged"} {
		w := newVec("identity", expect, "")
		room := "Go0identityRoomAAAAAAA"
		w.add("room", "%s", room)
		secret := seed("invite", 32)
		w.add("invite secret", "%x", secret)
		ms := genMembers(t, w, "identity", "keypackage", []byte(room), 3)
		b := SealIdentity(InviteKey(secret, room), room, Identity{Member: 3, Public: ms[3].sig.Public(), Display: []byte("display key")}, seed("iv", 12))
		from := 3
		if expect == "forged" {
			w.add("comment", "member 3's announcement, replayed by the relay as if member 5 sent it")
			from = 5
		}
		w.add("identity", "%d %x", from, b)
		w.write(t, "go-identity-"+expect+".txt")
	}
}
