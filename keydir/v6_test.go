package keydir

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// v6Config makes RFC 9580 v6 keys with Ed25519 and X25519, as the browser's "v6" key type does.
var v6Config = &packet.Config{V6Keys: true, Algorithm: packet.PubKeyAlgoEd25519}

// TestPublishV6Key: a v6 key is published, served and described with its 32-byte fingerprint, and may replace a
// v4 key (and the reverse).
func TestPublishV6Key(t *testing.T) {
	d, _ := newTestDir(t, nil)
	acc := mustRegister(t, d, "alice")
	v4 := genKey(t, "alice", nil)
	if _, err := publish(t, d, acc.ID, v4, v4); err != nil {
		t.Fatalf("v4 key: %v", err)
	}
	v6 := genKey(t, "alice", v6Config)
	info, err := publish(t, d, acc.ID, v6, v6)
	if err != nil {
		t.Fatalf("PublishKey(v6): %v", err)
	}
	if info.Version != 6 || len(info.Fingerprint) != 64 || info.Fingerprint != strings.ToUpper(hex.EncodeToString(v6.PrimaryKey.Fingerprint)) {
		t.Fatalf("v6 key described as version %d, fingerprint %q", info.Version, info.Fingerprint)
	}
	if info.Algorithm != "ed25519" || len(info.Subkeys) != 1 || info.Subkeys[0] != "cv25519" {
		t.Fatalf("algorithms %q %q", info.Algorithm, info.Subkeys)
	}
	if len(info.PreviousFingerprint) != 40 || info.ChangedAt.IsZero() {
		t.Fatalf("the change from the v4 key is not recorded: %+v", info)
	}
	p, err := d.User("alice")
	if err != nil || p.Key == nil || p.Key.Fingerprint != info.Fingerprint {
		t.Fatalf("User = %+v, %v", p, err)
	}
	el, err := openpgp.ReadArmoredKeyRing(strings.NewReader(p.Key.Armored))
	if err != nil || len(el) != 1 || el[0].PrimaryKey.Version != 6 || !bytes.Equal(el[0].PrimaryKey.Fingerprint, v6.PrimaryKey.Fingerprint) {
		t.Fatalf("served armor does not read back as the v6 key: %v", err)
	}
	back, err := publish(t, d, acc.ID, v4, v4)
	if err != nil || back.Version != 4 || back.PreviousFingerprint != info.Fingerprint {
		t.Fatalf("v4 again: %+v, %v", back, err)
	}
}

// TestPublishV6KeyRefusals: a broken v6 key is refused with an error that says what is wrong with it.
func TestPublishV6KeyRefusals(t *testing.T) {
	// A post-quantum key is about 18 KiB armored: room for it, so that the algorithm is what refuses it.
	d, _ := newTestDir(t, func(c *Config) { c.MaxChallengesPerUser, c.MaxKeyBytes = 100, 64<<10 })
	acc := mustRegister(t, d, "alice")
	v6 := genKey(t, "alice", v6Config)
	pqc := genKey(t, "alice", &packet.Config{V6Keys: true, Algorithm: packet.PubKeyAlgoMldsa65Ed25519})
	cases := map[string]struct {
		key  string
		want error
		says string
	}{
		"no direct-key signature": {rewritePackets(t, v6, func(op *packet.OpaquePacket, p packet.Packet) bool {
			return !isDirectKeySig(p)
		}), ErrKeyMalformed, "direct-key signature"},
		"forged direct-key signature": {rewritePackets(t, v6, func(op *packet.OpaquePacket, p packet.Packet) bool {
			if isDirectKeySig(p) {
				op.Contents[len(op.Contents)-9] ^= 1 // inside the Ed25519 signature, the packet's last 64 bytes
			}
			return true
		}), ErrKeyMalformed, "direct-key self-signature"},
		"truncated": {func() string {
			a := armorPublic(t, v6)
			blk, _ := armor.Decode(strings.NewReader(a))
			var body bytes.Buffer
			body.ReadFrom(blk.Body)
			return armorBytes(t, body.Bytes()[:30])
		}(), ErrKeyMalformed, ""},
		"post-quantum": {armorPublic(t, pqc), ErrKeyWeak, "post-quantum"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			ch, err := d.IssueChallenge(acc.ID, PurposePublishKey)
			if err != nil {
				t.Fatal(err)
			}
			_, err = d.PublishKey(acc.ID, c.key, ch, signText(t, v6, ch))
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.says) {
				t.Fatalf("PublishKey = %v, want %v saying %q", err, c.want, c.says)
			}
			if d.keyOf(acc.ID) != nil {
				t.Fatal("a refused key was published")
			}
		})
	}
}

func isDirectKeySig(p packet.Packet) bool {
	s, ok := p.(*packet.Signature)
	return ok && s.SigType == packet.SigTypeDirectSignature
}

// rewritePackets returns e's public key, armored, with each packet passed through keep, which may change its
// contents or drop it.
func rewritePackets(t *testing.T, e *openpgp.Entity, keep func(*packet.OpaquePacket, packet.Packet) bool) string {
	t.Helper()
	var raw bytes.Buffer
	if err := e.Serialize(&raw); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	r := packet.NewOpaqueReader(&raw)
	for {
		op, err := r.Next()
		if err != nil {
			break
		}
		p, err := op.Parse()
		if err != nil {
			t.Fatal(err)
		}
		if !keep(op, p) {
			continue
		}
		if err := op.Serialize(&out); err != nil {
			t.Fatal(err)
		}
	}
	return armorBytes(t, out.Bytes())
}

func armorBytes(t *testing.T, b []byte) string {
	t.Helper()
	var buf bytes.Buffer
	w, err := armor.Encode(&buf, openpgp.PublicKeyType, nil)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(b)
	w.Close()
	return buf.String()
}
