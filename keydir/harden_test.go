package keydir

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

func TestConfusableUsernames(t *testing.T) {
	d, _ := newTestDir(t, nil)
	mustRegister(t, d, "mallory")
	mustRegister(t, d, "malory") // a different name, not a look-alike
	for _, name := range []string{"rnallory", "ma11ory", "mall0ry", "MA11ORY", "rna11ory"} {
		_, err := d.Register(context.Background(), Registration{Username: name, FullName: "M", Password: goodPassword})
		if !errors.Is(err, ErrUsernameConfusable) {
			t.Errorf("Register(%q) = %v, want ErrUsernameConfusable", name, err)
		}
	}
	// Either way round: the look-alike registered first keeps the real spelling out.
	mustRegister(t, d, "c1over")
	if _, err := d.Register(context.Background(), Registration{Username: "clover", FullName: "C", Password: goodPassword}); !errors.Is(err, ErrUsernameConfusable) {
		t.Errorf("clover next to c1over: %v", err)
	}
	for in, want := range map[string]string{"rnallory": "mallory", "vvendy": "wendy", "clare": "dare", "b0b": "bob", "a1ice": "alice"} {
		if got := Skeleton(in); got != want {
			t.Errorf("Skeleton(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestFullNameRefusesInvisibleAndUnassigned(t *testing.T) {
	for name, s := range map[string]string{
		"unassigned":        "Eve \u0378",
		"private use":       "Eve \ue000",
		"noncharacter":      "Eve \ufdd0",
		"khmer inherent":    "Eve\u17b4",
		"hangul filler":     "\u3164",
		"tag character":     "Eve\U000E0041",
		"stacked marks":     "Eve\u0301\u0302\u0303\u0304\u0305\u0306",
		"mark on nothing":   "\u0301Eve",
		"only marks":        "\u0301\u0302",
		"mongolian fvs":     "Eve\u180b",
		"interlinear annot": "Eve\ufff9",
	} {
		if _, err := normalizeFullName(s); !errors.Is(err, ErrFullNameInvalid) {
			t.Errorf("%s: normalizeFullName(%q) = %v, want ErrFullNameInvalid", name, s, err)
		}
	}
	for _, s := range []string{"Zoë Ångström", "Jose\u0301", "李小龍", "Алиса", "O'Brien-Smith", "Ṩ̂"} {
		if _, err := normalizeFullName(s); err != nil {
			t.Errorf("normalizeFullName(%q) = %v", s, err)
		}
	}
}

type nopCloser struct{ *bytes.Buffer }

func (nopCloser) Close() error { return nil }

// armorPackets armors raw packets as a public key block.
func armorPackets(t *testing.T, raw []byte) string {
	var b bytes.Buffer
	w, _ := armor.Encode(&b, openpgp.PublicKeyType, nil)
	w.Write(raw)
	w.Close()
	return b.String()
}

// compressed wraps raw packets in a compressed-data packet.
func compressed(t *testing.T, raw []byte) []byte {
	var b bytes.Buffer
	w, err := packet.SerializeCompressed(nopCloser{&b}, packet.CompressionZLIB, nil)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(raw)
	w.Close()
	// Written again with a definite length, as most tools do.
	op, err := packet.NewOpaqueReader(&b).Next()
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	op.Serialize(&out)
	return out.Bytes()
}

func TestPrivateKeyInsideCompressedData(t *testing.T) {
	d, _ := newTestDir(t, func(c *Config) { c.MaxChallengesPerUser = 100 })
	acc := mustRegister(t, d, "alice")
	e := genKey(t, "alice", nil)
	var pub, priv bytes.Buffer
	e.Serialize(&pub)
	e.SerializePrivate(&priv, nil)
	cases := map[string]struct {
		raw  []byte
		want error
	}{
		"secret after the key":          {append(bytes.Clone(pub.Bytes()), compressed(t, priv.Bytes())...), ErrPrivateKey},
		"secret before the key":         {append(compressed(t, priv.Bytes()), pub.Bytes()...), ErrPrivateKey},
		"secret two levels deep":        {append(bytes.Clone(pub.Bytes()), compressed(t, compressed(t, priv.Bytes()))...), ErrPrivateKey},
		"the public key, compressed":    {compressed(t, pub.Bytes()), ErrKeyMalformed},
		"compressed junk after the key": {append(bytes.Clone(pub.Bytes()), compressed(t, []byte("junk"))...), ErrKeyMalformed},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			ch, _ := d.IssueChallenge(acc.ID, PurposePublishKey)
			_, err := d.PublishKey(acc.ID, armorPackets(t, c.raw), ch, signText(t, e, ch))
			if !errors.Is(err, c.want) {
				t.Fatalf("PublishKey = %v, want %v", err, c.want)
			}
		})
	}
}

func TestKeyUserIDsNameTheAccountOnly(t *testing.T) {
	d, _ := newTestDir(t, func(c *Config) { c.MaxChallengesPerUser = 100 })
	acc := mustRegister(t, d, "alice") // full name "Test alice", e-mail alice@example.org
	withIDs := func(ids ...[3]string) *openpgp.Entity {
		e, err := openpgp.NewEntity(ids[0][0], ids[0][1], ids[0][2], &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA})
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range ids[1:] {
			if err := e.AddUserId(id[0], id[1], id[2], nil); err != nil {
				t.Fatal(err)
			}
		}
		return e
	}
	cases := map[string]struct {
		ids  [][3]string
		want error
	}{
		"name only":                {[][3]string{{"alice", "", ""}}, nil},
		"name and own e-mail":      {[][3]string{{"alice", "", "alice@example.org"}}, nil},
		"full name, username note": {[][3]string{{"Test alice", "alice", "alice@example.org"}}, nil},
		"second user ID for bob":   {[][3]string{{"alice", "", ""}, {"bob", "", ""}}, ErrKeyUserID},
		"someone else's e-mail":    {[][3]string{{"alice", "", "bob@example.org"}}, ErrKeyUserID},
		"another person's name":    {[][3]string{{"Bob Smith", "alice", ""}}, ErrKeyUserID},
		"comment naming another":   {[][3]string{{"alice", "bob", ""}}, ErrKeyUserID},
		"five user IDs":            {[][3]string{{"alice", "", ""}, {"Alice", "", ""}, {"ALICE", "", ""}, {"alice", "", "alice@example.org"}, {"Test alice", "alice", ""}}, ErrKeyTooLarge},
		"a user ID of 300 bytes":   {[][3]string{{"alice", strings.Repeat("alice", 0), "alice@" + strings.Repeat("a", 290) + ".org"}}, ErrKeyTooLarge},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			e := withIDs(c.ids...)
			if _, err := publish(t, d, acc.ID, e, e); !errors.Is(err, c.want) {
				t.Fatalf("PublishKey = %v, want %v", err, c.want)
			}
		})
	}
	// An account without an e-mail address: user IDs without one.
	bob, err := d.Register(context.Background(), Registration{Username: "bob", FullName: "Bob", Password: goodPassword})
	if err != nil {
		t.Fatal(err)
	}
	withMail := genKey(t, "bob", nil)
	if _, err := publish(t, d, bob.ID, withMail, withMail); !errors.Is(err, ErrKeyUserID) {
		t.Fatalf("bob <bob@example.org> for an account without e-mail: %v", err)
	}
	nomail := withIDs([3]string{"bob", "", ""})
	if _, err := publish(t, d, bob.ID, nomail, nomail); err != nil {
		t.Fatalf("bob without e-mail: %v", err)
	}
}

// HeldBytes stays within a factor of two of the Go heap that accounts and keys really take.
func TestHeldBytesTracksHeap(t *testing.T) {
	d, _ := newTestDir(t, func(c *Config) { c.MaxChallengesPerUser = 100 })
	const n = 300
	keys := make([]*openpgp.Entity, n)
	for i := range keys {
		keys[i] = genKey(t, fmt.Sprint("user", i), nil)
	}
	heap := func() int64 {
		var m runtime.MemStats
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&m)
		return int64(m.HeapAlloc)
	}
	h0, held0 := heap(), d.HeldBytes()
	for i := range n {
		acc := mustRegister(t, d, fmt.Sprint("user", i))
		if _, err := publish(t, d, acc.ID, keys[i], keys[i]); err != nil {
			t.Fatal(err)
		}
		if _, _, err := d.Login(context.Background(), fmt.Sprint("nobody", i), goodPassword); !errors.Is(err, ErrBadCredentials) {
			t.Fatal(err)
		}
		d.IssueChallenge(acc.ID, PurposeSession)
	}
	grew, counted := heap()-h0, d.HeldBytes()-held0
	runtime.KeepAlive(keys)
	t.Logf("%d accounts with keys: the heap grew %d bytes, HeldBytes %d (%.2f)", n, grew, counted, float64(counted)/float64(grew))
	if counted < grew/2 || counted > grew*2 {
		t.Fatalf("HeldBytes counts %d for a heap growth of %d", counted, grew)
	}
}
