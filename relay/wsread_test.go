package relay

import (
	"bytes"
	"testing"
)

// TestMaskBytes compares the eight-bytes-at-a-time masking with the definition (RFC 6455 §5.3) for every
// key position and the lengths around the word size.
func TestMaskBytes(t *testing.T) {
	key := [4]byte{0x12, 0x34, 0x56, 0x78}
	for pos := range 4 {
		for n := range 40 {
			b := make([]byte, n)
			for i := range b {
				b[i] = byte(i * 7)
			}
			want := bytes.Clone(b)
			for i := range want {
				want[i] ^= key[(pos+i)&3]
			}
			maskBytes(key, pos, b)
			if !bytes.Equal(b, want) {
				t.Fatalf("pos %d, %d bytes: got %x, want %x", pos, n, b, want)
			}
		}
	}
}
