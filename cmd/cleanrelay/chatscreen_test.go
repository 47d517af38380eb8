package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseScreenLine(t *testing.T) {
	for line, want := range map[string]chatCommand{
		"hello":         {Cmd: "send", Text: "hello"},
		"//etc/passwd":  {Cmd: "send", Text: "/etc/passwd"},
		"/file a b.txt": {Cmd: "file", Path: "a b.txt"},
		"/trust 3":      {Cmd: "trust", Member: 3},
		"/trust":        {Cmd: "trust"},
		"/export k.zip": {Cmd: "export", Path: "k.zip"},
		"/timer 30":     {Cmd: "timer", TTL: 30},
		"/burn":         {Cmd: "burn"},
		"/quit":         {Cmd: "leave"},
	} {
		if got, err := parseScreenLine(line); err != nil || got != want {
			t.Errorf("%q: %+v %v", line, got, err)
		}
	}
	for _, bad := range []string{"/file", "/trust x", "/timer -1", "/export", "/nope"} {
		if _, err := parseScreenLine(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// startTmux runs cleanrelay with args in a detached 80×24 tmux session; tmux runs a tmux command on it, screen
// waits until the pane shows want and returns the pane.
func startTmux(t *testing.T, args ...string) (tmux func(args ...string) string, screen func(want string) string) {
	t.Helper()
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Fatal("tmux is not installed (apt-get install tmux; .ci/test installs it)")
	}
	bin, err := buildBinary()
	if err != nil {
		t.Fatal(err)
	}
	sock := fmt.Sprintf("crchat-%d", time.Now().UnixNano())
	tmux = func(args ...string) string {
		out, err := exec.Command("tmux", append([]string{"-L", sock}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("tmux %q: %v %s", args, err, out)
		}
		return string(out)
	}
	tmux(append([]string{"-f", "/dev/null", "new-session", "-d", "-x", "80", "-y", "24", "-s", "chat", "--", bin}, args...)...)
	t.Cleanup(func() { exec.Command("tmux", "-L", sock, "kill-server").Run() })
	screen = func(want string) string {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			s := tmux("capture-pane", "-p", "-t", "chat")
			if strings.Contains(s, want) {
				return s
			}
			if time.Now().After(deadline) {
				t.Fatalf("the screen never showed %q:\n%s", want, s)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	return tmux, screen
}

// TestChatScreenInTmux drives the interactive screen in a real 80×24 terminal (tmux): it joins a room a
// --json client created, shows the safety code on the status line, sends what is typed, shows the reply.
func TestChatScreenInTmux(t *testing.T) {
	_, url, _ := startServe(t, "--local-only", "--listen", "127.0.0.1:0")
	peer := startChat(t, "--create", url)
	link := peer.wait(t, "invite", nil).Link
	tmux, screen := startTmux(t, "chat", "--save", t.TempDir(), link)
	code := peer.wait(t, "safety", nil).Safety
	s := screen(code)
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > 24 || !strings.Contains(lines[len(lines)-2], "online") || !strings.Contains(lines[len(lines)-2], code) {
		t.Fatalf("status line (second to last) should show online and the safety code %s:\n%s", code, s)
	}
	tmux("send-keys", "-t", "chat", "-l", "hello from the screen")
	tmux("send-keys", "-t", "chat", "Enter")
	peer.wait(t, "message", func(e chatEvent) bool { return e.Text == "hello from the screen" && e.From == 2 })
	screen("me: hello from the screen")
	peer.send(t, chatCommand{Cmd: "send", Text: "a reply to the screen"})
	screen("1: a reply to the screen")
	tmux("send-keys", "-t", "chat", "-l", "/burn")
	tmux("send-keys", "-t", "chat", "Enter")
	if e := peer.wait(t, "ended", nil); e.Reason != "burned" {
		t.Fatalf("ended %+v", e)
	}
}

// TestChatDialogScreenInTmux: a dialog on the screen. The password and the export passphrase are typed at
// prompts without echo, the new key is offered for export before the screen opens and saved; then the safety
// code on the status line, a message each way, and a key change of the peer blocking until /trust.
func TestChatDialogScreenInTmux(t *testing.T) {
	url := relayWithAccounts(t)
	dir := t.TempDir()
	bobZip, aliceZip := filepath.Join(dir, "bob.zip"), filepath.Join(dir, "alice.zip")
	envB := []string{envPassword + "=Bob-pass1!", envPassphrase + "=Bob-zip-pass1!"}
	b := startChatEnv(t, envB, "--login", "bob", "--key-type", "curve25519", "--export", bobZip, url, "@alice")
	b.wait(t, "exported", nil)
	b.exit(t) // alice has no key yet
	tmux, screen := startTmux(t, "chat", "--login", "alice", "--key-type", "curve25519", "--save", dir, url, "@bob")
	typeLine := func(s string) {
		tmux("send-keys", "-t", "chat", "-l", s)
		tmux("send-keys", "-t", "chat", "Enter")
	}
	screen("password for alice:")
	typeLine("Alice-pass1!")
	screen("Save it as a ZIP the browser imports?")
	typeLine(aliceZip)
	if s := screen("passphrase for alice.zip:"); strings.Contains(s, "Alice-pass1!") || !strings.Contains(s, "password for alice:") {
		t.Fatalf("the password was echoed (or the prompt is gone):\n%s", s)
	}
	typeLine("Alice-zip-pass1!")
	b = startChatEnv(t, envB, "--login", "bob", "--key", bobZip, url, "@alice")
	code := b.wait(t, "safety", nil).Safety
	screen(code)
	if _, err := os.Stat(aliceZip); err != nil {
		t.Fatalf("the offered export was not saved: %v", err)
	}
	typeLine("hello bob from the screen")
	b.wait(t, "message", func(e chatEvent) bool { return e.Text == "hello bob from the screen" })
	b.send(t, chatCommand{Cmd: "send", Text: "a reply to the dialog screen"})
	screen("a reply to the dialog screen")

	// Bob comes back with a new key: the screen says KEY CHANGED and sends nothing until /trust.
	b.send(t, chatCommand{Cmd: "leave"})
	b.exit(t)
	b = startChatEnv(t, envB, "--login", "bob", "--new-key", "--key-type", "curve25519", url, "@alice")
	screen("KEY CHANGED")
	typeLine("not to the new key")
	screen("blocked: a member's key changed")
	typeLine("/trust")
	code = b.wait(t, "safety", nil).Safety
	screen(code)
	typeLine("to the new key")
	if m := b.wait(t, "message", nil); m.Text != "to the new key" {
		t.Fatalf("bob's new key read %q (the blocked message went out?)", m.Text)
	}
	typeLine("/burn")
	if e := b.wait(t, "ended", nil); e.Reason != "burned" {
		t.Fatalf("ended %+v", e)
	}
}
