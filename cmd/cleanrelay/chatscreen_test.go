package main

import (
	"fmt"
	"os/exec"
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
		"/timer 30":     {Cmd: "timer", TTL: 30},
		"/burn":         {Cmd: "burn"},
		"/quit":         {Cmd: "leave"},
	} {
		if got, err := parseScreenLine(line); err != nil || got != want {
			t.Errorf("%q: %+v %v", line, got, err)
		}
	}
	for _, bad := range []string{"/file", "/trust x", "/timer -1", "/nope"} {
		if _, err := parseScreenLine(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestChatScreenInTmux drives the interactive screen in a real 80×24 terminal (tmux): it joins a room a
// --json client created, shows the safety code on the status line, sends what is typed, shows the reply.
func TestChatScreenInTmux(t *testing.T) {
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Fatal("tmux is not installed (apt-get install tmux; .ci/test installs it)")
	}
	bin, err := buildBinary()
	if err != nil {
		t.Fatal(err)
	}
	_, url, _ := startServe(t, "--local-only", "--listen", "127.0.0.1:0")
	peer := startChat(t, "--create", url)
	link := peer.wait(t, "invite", nil).Link
	sock := fmt.Sprintf("crchat-%d", time.Now().UnixNano())
	tmux := func(args ...string) string {
		out, err := exec.Command("tmux", append([]string{"-L", sock}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("tmux %q: %v %s", args, err, out)
		}
		return string(out)
	}
	tmux("-f", "/dev/null", "new-session", "-d", "-x", "80", "-y", "24", "-s", "chat", "--", bin, "chat", "--save", t.TempDir(), link)
	t.Cleanup(func() { exec.Command("tmux", "-L", sock, "kill-server").Run() })
	screen := func(want string) string {
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
