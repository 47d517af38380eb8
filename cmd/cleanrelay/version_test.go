package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/cleanrelay/cleanrelay/static"
)

// shellDigest is the one-liner docs/operations.md gives users, run in dir.
const shellDigest = `find . -type f ! -name '*.go' -printf '%P\n' | LC_ALL=C sort | xargs -d '\n' sha256sum | sha256sum`

func runShellDigest(t *testing.T, dir string) string {
	t.Helper()
	cmd := exec.Command("sh", "-c", shellDigest)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v", shellDigest, err)
	}
	hex, _, _ := strings.Cut(string(out), " ")
	return hex
}

// TestVersionDigestMatchesShell checks that "cleanrelay version" reports what the documented shell line
// computes over the static/ folder the binary embeds.
func TestVersionDigestMatchesShell(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"version"}, &stdout, &stderr); code != 0 {
		t.Fatalf("version exited %d: %s", code, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	if len(lines) != 3 || lines[0] != "cleanrelay "+version || lines[1] != "go "+runtime.Version() || !strings.HasPrefix(lines[2], "client sha256:") {
		t.Fatalf("version printed %q", stdout.String())
	}
	want := runShellDigest(t, filepath.Join("..", "..", "static"))
	if got := strings.TrimPrefix(lines[2], "client sha256:"); got != want {
		t.Fatalf("version says client sha256:%s, the shell line over static/ says %s", got, want)
	}
}

// TestClientDigestOrder checks the parts a one-file client cannot: nested folders sorted as whole paths
// ("a.txt" before "a/b"), and that any change of a path or a byte changes the digest.
func TestClientDigestOrder(t *testing.T) {
	files := map[string]string{"a.txt": "one\n", "a/b.js": "two\n", "a/c/d.css": "three\n", "Z.html": "four\n"}
	dir := t.TempDir()
	mem := fstest.MapFS{}
	for p, content := range files {
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, p), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		mem[p] = &fstest.MapFile{Data: []byte(content)}
	}
	got, err := clientDigest(mem)
	if err != nil {
		t.Fatal(err)
	}
	if want := runShellDigest(t, dir); got != want {
		t.Fatalf("clientDigest = %s, shell = %s", got, want)
	}
	mem["a/b.js"] = &fstest.MapFile{Data: []byte("twO\n")}
	if changed, _ := clientDigest(mem); changed == got {
		t.Fatal("changing a byte did not change the digest")
	}
	mem["a/b.js"] = &fstest.MapFile{Data: []byte("two\n")}
	delete(mem, "Z.html")
	mem["Y.html"] = &fstest.MapFile{Data: []byte("four\n")}
	if changed, _ := clientDigest(mem); changed == got {
		t.Fatal("renaming a file did not change the digest")
	}
	if _, err := clientDigest(fstest.MapFS{"bad\\name": {Data: nil}}); err == nil {
		t.Fatal("a path sha256sum would escape was hashed")
	}
	if _, err := clientDigest(static.Files); err != nil {
		t.Fatal(err)
	}
}
