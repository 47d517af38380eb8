package pgp

import "testing"

// BenchmarkEncrypt: one chat message (a 256-byte plaintext bucket) to an RSA-4096 or Curve25519 peer, signed,
// with the reused session key (the steady state of a dialog).
func BenchmarkEncrypt(b *testing.B) {
	keys := loadKeys(b)
	for _, pair := range [][2]string{{"go-rsa", "js-rsa"}, {"go-curve", "js-curve"}} {
		b.Run(pair[0], func(b *testing.B) {
			s := NewSender(keys[pair[0]])
			s.SetRecipients([]*Key{keys[pair[1]]})
			msg := []byte("\x00\x30{\"k\":\"msg\",\"id\":\"x\",\"text\":\"hello\",\"ttl\":0}")
			for b.Loop() {
				if _, err := s.Encrypt(msg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDecrypt: opening and verifying such a message (a private-key operation each time: this package
// keeps no session-key cache).
func BenchmarkDecrypt(b *testing.B) {
	keys := loadKeys(b)
	for _, pair := range [][2]string{{"go-rsa", "js-rsa"}, {"go-curve", "js-curve"}} {
		b.Run(pair[0], func(b *testing.B) {
			s := NewSender(keys[pair[0]])
			s.SetRecipients([]*Key{keys[pair[1]]})
			msg, err := s.Encrypt([]byte("\x00\x02{}"))
			if err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				if o, err := Decrypt(keys[pair[1]], msg, keys[pair[0]]); err != nil || o.Signer != 0 {
					b.Fatal(err)
				}
			}
		})
	}
}
