package e2e

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type anySig struct{}

func (anySig) Verify(msg, sig []byte) bool { return true }

// seedsFrom adds every hex value of the vectors under the given header as a fuzz seed.
func seedsFrom(f *testing.F, header string) {
	files, _ := filepath.Glob(filepath.Join(vectorDir, "*.txt"))
	for _, path := range files {
		b, _ := os.ReadFile(path)
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, header+": "); ok {
				fs := strings.Fields(v)
				if raw, err := hexDecode(fs[len(fs)-1]); err == nil {
					f.Add(raw)
				}
			}
		}
	}
}

func FuzzKeyPackage(f *testing.F) {
	seedsFrom(f, "keypackage")
	f.Fuzz(func(t *testing.T, b []byte) {
		kp, err := ParseKeyPackage(b, "keypackage", nil, anySig{})
		if err != nil {
			return
		}
		if !bytes.Equal(kp.marshal(), b) {
			t.Fatalf("parse → marshal changed the bytes")
		}
	})
}

func FuzzCommit(f *testing.F) {
	seedsFrom(f, "commit")
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseCommit(b, nil, anySig{})
		if err != nil {
			return
		}
		out := binary.BigEndian.AppendUint16(c.body(), uint16(len(c.Sig)))
		if !bytes.Equal(append(out, c.Sig...), b) {
			t.Fatalf("parse → marshal changed the bytes")
		}
	})
}
