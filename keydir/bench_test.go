package keydir

import (
	"context"
	"testing"
)

// BenchmarkLogin compares the three ways a login fails or succeeds: the
// numbers for an unknown user and a wrong password must be the same (both are
// one bcrypt comparison at the real cost).
func BenchmarkLogin(b *testing.B) {
	d, err := New(Config{TokenAlgorithm: "EdDSA", LoginFreeFailures: 1 << 30})
	if err != nil {
		b.Fatal(err)
	}
	mustRegister(b, d, "alice")
	ctx := context.Background()
	for _, c := range []struct{ name, user, pw string }{
		{"wrong-password", "alice", "Wrong-h0rse"},
		{"unknown-user", "nobody", "Wrong-h0rse"},
		{"success", "alice", goodPassword},
	} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				d.Login(ctx, c.user, c.pw)
			}
		})
	}
}

func BenchmarkAuthenticate(b *testing.B) {
	for _, alg := range []string{"RS256", "EdDSA"} {
		b.Run(alg, func(b *testing.B) {
			d, _ := newTestDir(b, func(c *Config) { c.TokenAlgorithm = alg })
			mustRegister(b, d, "alice")
			tok, _, err := d.Login(context.Background(), "alice", goodPassword)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := d.Authenticate(tok); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkCheckSender(b *testing.B) {
	d, _ := newTestDir(b, nil)
	acc := mustRegister(b, d, "alice")
	e := genKey(b, "alice", nil)
	info, err := publish(b, d, acc.ID, e, e)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := d.CheckSender(acc.ID, info.Fingerprint); err != nil {
			b.Fatal(err)
		}
	}
}
