package ws

import (
	"encoding/binary"
	"unsafe"
)

// Bytes that pass through the CPU's vector registers stay there until other code overwrites those registers,
// and an idle thread can keep them for as long as the process lives. Go's memmove (every copy and append)
// moves up to 256 bytes at a time through X0–X15 on amd64. Whoever dumps the process as root reads the
// registers from the thread's saved state, or from a signal frame on the thread's signal stack: every signal
// (the runtime preempts goroutines with SIGURG) writes the registers it interrupted there, and the frame stays
// until the next signal on that thread. Both are memory the relay does not control (docs/threat-model.md §6).
//
// So the relay moves frame payloads only with copyWords and maskCopy, eight bytes at a time through a
// general-purpose register, and formats and writes each message itself (writer.go) instead of through
// gorilla's memmove; and a worker scrubs the vector registers when it finishes a task (ScrubRegisters).
// Outside this package, a frame's bytes are a Payload (pool.go), whose only accessors are these copies.

// copyWords copies src to dst like copy and returns the bytes copied, without vector registers: eight bytes at
// a time through one general-purpose register, which the next word overwrites. (Go's compiler keeps each
// unsafe word load and store a plain MOVQ; a slice-based loop is six times slower for its bounds checks.)
//
//go:noinline (TestCopiesUseNoVectorRegisters reads this function's own code)
func copyWords(dst, src []byte) int {
	n := min(len(dst), len(src))
	d, s := unsafe.Pointer(unsafe.SliceData(dst)), unsafe.Pointer(unsafe.SliceData(src))
	i := 0
	for ; i+16 <= n; i += 16 {
		*(*uint64)(unsafe.Add(d, i)) = *(*uint64)(unsafe.Add(s, i))
		*(*uint64)(unsafe.Add(d, i+8)) = *(*uint64)(unsafe.Add(s, i+8))
	}
	for ; i+8 <= n; i += 8 {
		*(*uint64)(unsafe.Add(d, i)) = *(*uint64)(unsafe.Add(s, i))
	}
	for ; i < n; i++ {
		dst[i] = src[i]
	}
	return n
}

// maskCopy writes src masked with key, whose first byte is at position pos of the key (RFC 6455 §5.3), to dst,
// which must be at least as long as src and may be src itself. Like copyWords, it uses no vector registers.
//
//go:noinline (as copyWords)
func maskCopy(dst, src []byte, key [4]byte, pos int) {
	var k [8]byte
	for i := range k {
		k[i] = key[(pos+i)&3]
	}
	k8 := binary.LittleEndian.Uint64(k[:]) // the bytes are in memory order either way: the XOR is bytewise
	n := len(src)
	dst = dst[:n]
	d, s := unsafe.Pointer(unsafe.SliceData(dst)), unsafe.Pointer(unsafe.SliceData(src))
	i := 0
	for ; i+16 <= n; i += 16 {
		*(*uint64)(unsafe.Add(d, i)) = *(*uint64)(unsafe.Add(s, i)) ^ k8
		*(*uint64)(unsafe.Add(d, i+8)) = *(*uint64)(unsafe.Add(s, i+8)) ^ k8
	}
	for ; i+8 <= n; i += 8 {
		*(*uint64)(unsafe.Add(d, i)) = *(*uint64)(unsafe.Add(s, i)) ^ k8
	}
	for ; i < n; i++ {
		dst[i] = src[i] ^ k[i&7]
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

// ScrubRegisters zeroes the calling thread's vector registers X0–X15 (on amd64), by copying 256 zero bytes.
// A goroutine that handled frames or secrets calls it before it leaves its thread to other goroutines or to
// idleness. It costs about as much as a 256-byte copy.
func ScrubRegisters() {
	var dst [scrubSize]byte
	copy(dst[:scrubLen], scrubZeros[:scrubLen])
}
