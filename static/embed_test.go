package static

import (
	"io/fs"
	"testing"
)

// The vendored ML-KEM has files whose names start with "_", which a directory pattern of go:embed
// would leave out; the browser then fails to load ml-kem.js.
func TestEmbedsVendoredMLKEM(t *testing.T) {
	for _, f := range []string{"vendor/noble/post-quantum/ml-kem.js", "vendor/noble/post-quantum/_crystals.js", "vendor/noble/hashes/_u64.js",
		"vendor/noble/curves/abstract/fft.js", "js/e2e-core.mjs", "vendor/noble/hashes/LICENSE"} {
		if _, err := fs.Stat(Files, f); err != nil {
			t.Errorf("%s is not embedded: %v", f, err)
		}
	}
}
