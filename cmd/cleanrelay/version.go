package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"runtime"
	"sort"
	"strings"

	"github.com/cleanrelay/cleanrelay/static"
)

// printVersion is "cleanrelay version": the version, the Go toolchain, and the digest of the embedded browser
// client, which a user compares with a release's (docs/operations.md says how to recompute it).
func printVersion(w io.Writer) int {
	digest, err := clientDigest(static.Files)
	if err != nil {
		digest = "unknown (" + err.Error() + ")"
	}
	fmt.Fprintf(w, "cleanrelay %s\ngo %s\nclient sha256:%s\n", version, runtime.Version(), digest)
	return 0
}

// clientDigest hashes every file of fsys the way this shell line does in a release's static/ folder:
//
//	find . -type f ! -name '*.go' -printf '%P\n' | LC_ALL=C sort | xargs -d '\n' sha256sum | sha256sum
//
// that is, the SHA-256 of a sha256sum manifest: one line "<hex sha256 of the content>  <path>\n" per file,
// paths relative to the folder with "/" separators, sorted bytewise. A path that sha256sum would escape (a
// backslash or a newline in it) is refused rather than hashed differently.
func clientDigest(fsys fs.FS) (string, error) {
	var paths []string
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			if strings.ContainsAny(p, "\\\n") {
				return fmt.Errorf("path %q cannot be hashed like sha256sum does", p)
			}
			paths = append(paths, p)
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("failed to list the client files: %w", err)
	}
	// WalkDir's order is per directory ("a/x" before "a.txt"); the manifest's is bytewise over whole paths.
	sort.Strings(paths)
	manifest := sha256.New()
	for _, p := range paths {
		b, err := fs.ReadFile(fsys, p)
		if err != nil {
			return "", fmt.Errorf("failed to read the client file %s: %w", p, err)
		}
		sum := sha256.Sum256(b)
		fmt.Fprintf(manifest, "%s  %s\n", hex.EncodeToString(sum[:]), p)
	}
	return hex.EncodeToString(manifest.Sum(nil)), nil
}
