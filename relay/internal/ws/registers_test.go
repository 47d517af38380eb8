package ws

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
)

// TestMaskCopy compares the eight-bytes-at-a-time masking with the definition (RFC 6455 §5.3) for every key
// position and the lengths around the word size, into another buffer and in place.
func TestMaskCopy(t *testing.T) {
	key := [4]byte{0x12, 0x34, 0x56, 0x78}
	for pos := range 4 {
		for n := range 40 {
			src := make([]byte, n)
			for i := range src {
				src[i] = byte(i * 7)
			}
			want := bytes.Clone(src)
			for i := range want {
				want[i] ^= key[(pos+i)&3]
			}
			dst := make([]byte, n)
			maskCopy(dst, src, key, pos)
			if !bytes.Equal(dst, want) {
				t.Fatalf("pos %d, %d bytes: got %x, want %x", pos, n, dst, want)
			}
			maskCopy(src, src, key, pos)
			if !bytes.Equal(src, want) {
				t.Fatalf("in place, pos %d, %d bytes: got %x, want %x", pos, n, src, want)
			}
		}
	}
}

// TestCopyWords: copyWords is copy, for the lengths around the word size and for unequal lengths.
func TestCopyWords(t *testing.T) {
	for n := range 40 {
		for _, dn := range []int{n, n + 3, n / 2} {
			src := make([]byte, n)
			for i := range src {
				src[i] = byte(i*13 + 1)
			}
			got, want := make([]byte, dn), make([]byte, dn)
			if k, w := copyWords(got, src), copy(want, src); k != w || !bytes.Equal(got, want) {
				t.Fatalf("%d into %d bytes: copied %d %x, want %d %x", n, dn, k, got, w, want)
			}
		}
	}
}

// TestCopiesUseNoVectorRegisters compiles this package as the relay builds it and reads the machine code of
// copyWords and maskCopy: no instruction may name a vector register or call memmove (registers.go). A compiler
// that merged the word moves into 16-byte ones would fail it.
func TestCopiesUseNoVectorRegisters(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skipf("the vector registers named here are amd64's; this is %s", runtime.GOARCH)
	}
	archive := filepath.Join(t.TempDir(), "ws.a")
	if out, err := exec.Command("go", "build", "-o", archive, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command("go", "tool", "objdump", "-s", `ws\.(copyWords|maskCopy)$`, archive).CombinedOutput()
	if err != nil {
		t.Fatalf("go tool objdump: %v\n%s", err, out)
	}
	funcs := 0
	vector := regexp.MustCompile(`\b[XYZ]\d+\b`)
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "TEXT ") {
			funcs++
		}
		if vector.MatchString(line) || strings.Contains(line, "runtime.memmove") {
			t.Errorf("uses a vector register, or memmove, which does: %s", line)
		}
	}
	if funcs != 2 {
		t.Fatalf("found %d of the 2 functions in the compiled package:\n%s", funcs, out)
	}
}
