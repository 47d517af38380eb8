package relay

import "encoding/binary"

// Bytes that pass through the CPU's vector registers stay there until other code overwrites those registers,
// and an idle thread can keep them for as long as the process lives. Go's memmove (every copy and append)
// moves up to 256 bytes at a time through X0–X15 on amd64. Whoever dumps the process as root reads the
// registers from the thread's saved state, or from a signal frame on the thread's signal stack: every signal
// (the runtime preempts goroutines with SIGURG) writes the registers it interrupted there, and the frame stays
// until the next signal on that thread. Both are memory the relay does not control (docs/threat-model.md §6).
//
// So the relay moves frame payloads only with copyWords and maskCopy, eight bytes at a time through a
// general-purpose register, and formats and writes each message itself (wswrite.go) instead of through
// gorilla's memmove; and a worker scrubs the vector registers when it finishes a task.

// copyWords copies src to dst like copy and returns the bytes copied, without vector registers: at most eight
// bytes of it are in a register at any time, and the next word overwrites them.
func copyWords(dst, src []byte) int {
	n := min(len(dst), len(src))
	dst, src = dst[:n], src[:n]
	for len(src) >= 8 {
		binary.LittleEndian.PutUint64(dst, binary.LittleEndian.Uint64(src))
		dst, src = dst[8:], src[8:]
	}
	copy(dst, src) // under eight bytes, memmove uses general-purpose registers too
	return n
}

// maskCopy writes src masked with key, whose first byte is at position pos of the key (RFC 6455 §5.3), to dst,
// which must be as long as src and may be src itself. Like copyWords, it uses no vector registers.
func maskCopy(dst, src []byte, key [4]byte, pos int) {
	var k [8]byte
	for i := range k {
		k[i] = key[(pos+i)&3]
	}
	k8 := binary.LittleEndian.Uint64(k[:])
	dst = dst[:len(src)]
	for len(src) >= 8 {
		binary.LittleEndian.PutUint64(dst, binary.LittleEndian.Uint64(src)^k8)
		dst, src = dst[8:], src[8:]
	}
	for i := range src {
		dst[i] = src[i] ^ k[i]
	}
}

// scrubSize is the copy that loads all of X0–X15: memmove's 129-through-256-byte case on amd64.
const scrubSize = 256

var (
	scrubZeros [scrubSize]byte
	// scrubLen is a variable so that the compiler keeps the copy a call to memmove, whose use of the
	// registers is the point, rather than inlining it.
	scrubLen = scrubSize
)

// scrubRegisters zeroes the calling thread's vector registers X0–X15 (on amd64), by copying 256 zero bytes.
// A goroutine that handled frames or secrets calls it before it leaves its thread to other goroutines or to
// idleness. It costs about as much as a 256-byte copy.
func scrubRegisters() {
	var dst [scrubSize]byte
	copy(dst[:scrubLen], scrubZeros[:scrubLen])
}
