package ws

import "testing"

// TestReleasedBuffersAreZeroed: a frame's bytes do not outlive it in the pools' buffers, of either kind.
func TestReleasedBuffersAreZeroed(t *testing.T) {
	b := GetBuf(1000)
	for i := range b.B {
		b.B[i] = 0xAA
	}
	whole := b.B[:cap(b.B)]
	PutBuf(b)
	p := GetPayload(1000)
	for i := range p.b {
		p.b[i] = 0xAA
	}
	wholePayload := p.b[:cap(p.b)]
	PutPayload(p)
	for _, w := range [][]byte{whole, wholePayload} {
		for i, v := range w {
			if v != 0 {
				t.Fatalf("byte %d of a released buffer is %#x", i, v)
			}
		}
	}
}

// TestPayloadCopies: a payload's bytes go in and out through its copies, whole and from an offset.
func TestPayloadCopies(t *testing.T) {
	src := []byte("\x01a frame of some bytes")
	p := PayloadOf(src)
	defer PutPayload(p)
	if p.Len() != len(src) || p.At(0) != 1 || p.Text() != nil {
		t.Fatalf("payload of %q: len %d, first byte %d, text %q", src, p.Len(), p.At(0), p.Text())
	}
	q := GetPayload(p.Len() - 1)
	defer PutPayload(q)
	q.CopyFrom(p, 1)
	out := make([]byte, q.Len())
	if n := q.CopyTo(out, 0); n != len(src)-1 || string(out) != string(src[1:]) {
		t.Fatalf("copied %d bytes %q, want %q", n, out, src[1:])
	}
}
