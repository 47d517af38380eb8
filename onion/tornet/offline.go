package tornet

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cleanrelay/cleanrelay/internal/syncbuf"
)

// offlineTimeout bounds an offline tor's start: it reads its configuration and keys and writes the hostname in
// well under a second on an idle machine.
const offlineTimeout = 60 * time.Second

// OfflineHostname starts a tor with DisableNetwork 1 (it joins no network at all) whose onion service has hsDir
// as its HiddenServiceDir, with extra torrc lines (e.g. HiddenServiceOnionBalanceInstance 1), waits for the
// hostname file tor writes there from the secret key it finds, ends tor and returns the hostname. A hostname
// file already in hsDir is removed first, so the one read is this tor's. Like every tor of this package it
// needs -tor and a loopback-only namespace; it fails the test when tor exits or writes no hostname.
func OfflineHostname(t testing.TB, hsDir string, extra ...string) string {
	t.Helper()
	Require(t)
	if err := CheckLoopbackOnly(); err != nil {
		t.Fatal(err)
	}
	torPath, err := exec.LookPath("tor")
	if err != nil {
		t.Fatalf("tor not found (apt-get install tor): %v", err)
	}
	dir := t.TempDir()
	data, empty, torrc := filepath.Join(dir, "data"), filepath.Join(dir, "empty"), filepath.Join(dir, "torrc")
	if err := os.Mkdir(data, 0o700); err != nil {
		t.Fatal(err)
	}
	hostname := filepath.Join(hsDir, "hostname")
	if err := os.Remove(hostname); err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	lines := append([]string{
		"DisableNetwork 1",
		"SocksPort 0",
		"DataDirectory " + data,
		"GeoIPFile " + empty,
		"GeoIPv6File " + empty,
		"Log notice stderr",
		"__OwningControllerProcess " + strconv.Itoa(os.Getpid()),
		"HiddenServiceDir " + hsDir,
		"HiddenServicePort 80 127.0.0.1:9",
	}, extra...)
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(torrc, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(torPath, "--defaults-torrc", empty, "-f", torrc)
	out := &syncbuf.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	defer stopProcess(cmd.Process, exited)
	deadline := time.Now().Add(offlineTimeout)
	for {
		b, err := os.ReadFile(hostname)
		if err == nil && bytes.HasSuffix(b, []byte("\n")) {
			return strings.TrimSpace(string(b))
		}
		select {
		case <-exited:
			t.Fatalf("tor exited without writing %s:\n%s", hostname, out.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("tor wrote no %s within %v:\n%s", hostname, offlineTimeout, out.String())
		}
	}
}
