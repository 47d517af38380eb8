package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cleanrelay/cleanrelay/onion/tornet"
)

// TestChatThroughTor: two terminal clients chat through the relay's onion service on the private Tor network,
// reached through the client tor's SOCKS port (--tor-socks). The relay's tor is killed mid-conversation while
// both keep writing; once the relay has published again, both come back on their own and every message arrives
// exactly once, in order. Needs -tor and a loopback-only namespace (.ci/test-tor.sh).
func TestChatThroughTor(t *testing.T) {
	n, sb := onionRelay(t)
	a := startChat(t, "--tor-socks", n.SocksAddr, "--create", sb.url)
	link := a.waitFor(t, 2*time.Minute, "invite", nil).Link
	if !strings.Contains(link, ".onion/#r=") {
		t.Fatalf("invite link %s", link)
	}
	b := startChat(t, "--tor-socks", n.SocksAddr, link)
	if sa, sb := a.waitFor(t, 2*time.Minute, "safety", nil), b.waitFor(t, 2*time.Minute, "safety", nil); sa.Safety != sb.Safety {
		t.Fatalf("safety codes differ: %s %s", sa.Safety, sb.Safety)
	}
	exchangeAcrossTorDeath(t, n, sb, a, b)
	b.send(t, chatCommand{Cmd: "burn"})
	a.waitFor(t, time.Minute, "ended", nil)
}

// TestChatDialogThroughTor: the same with two accounts in a dialog (protocol v2, logged-in sessions with their
// tickets): registration, login, key publication and the dialog go through the onion service too.
func TestChatDialogThroughTor(t *testing.T) {
	n, sb := onionRelay(t)
	registerOnly(t, n.HTTPClient(), sb.url, "alice", "Alice-pass1!")
	registerOnly(t, n.HTTPClient(), sb.url, "bob", "Bob-pass1!")
	zip := filepath.Join(t.TempDir(), "alice.zip")
	envA := []string{envPassword + "=Alice-pass1!", envPassphrase + "=Alice-zip-pass1!"}
	a := startChatEnv(t, envA, "--tor-socks", n.SocksAddr, "--login", "alice", "--key-type", "curve25519", "--export", zip, sb.url, "@bob")
	a.waitFor(t, 2*time.Minute, "exported", nil)
	if c := a.exit(t); c != 1 { // bob has no key yet
		t.Fatalf("exit %d; stderr %s", c, a.stderr)
	}
	b := startChatEnv(t, []string{envPassword + "=Bob-pass1!"}, "--tor-socks", n.SocksAddr, "--login", "bob", "--key-type", "curve25519", sb.url, "@alice")
	a = startChatEnv(t, envA, "--tor-socks", n.SocksAddr, "--login", "alice", "--key", zip, sb.url, "@bob")
	if sa, sb := a.waitFor(t, 2*time.Minute, "safety", nil), b.waitFor(t, 2*time.Minute, "safety", nil); sa.Safety != sb.Safety {
		t.Fatalf("safety codes differ: %s %s", sa.Safety, sb.Safety)
	}
	exchangeAcrossTorDeath(t, n, sb, a, b)
	a.send(t, chatCommand{Cmd: "burn"})
	b.waitFor(t, time.Minute, "ended", nil)
}

// onionRelay starts the relay in onion mode on a private Tor network and waits until its onion service answers.
func onionRelay(t *testing.T) (*tornet.Network, *servedBinary) {
	n := tornet.Start(t)
	sb := startServeTor(t, 2*time.Minute, "--tor-torrc-extra", writeTorrc(t, n), "--grace", "6m")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, sb.url, nil)
		resp, err := n.HTTPClient().Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			return n, sb
		}
		if ctx.Err() != nil {
			t.Fatalf("the onion service never answered: %v", err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// exchangeAcrossTorDeath has a and b write 20 messages each while the relay's tor is killed after the 10th; once
// the restarted tor has published again, each must read all of the other's once and in order, both having seen
// their connection drop.
func exchangeAcrossTorDeath(t *testing.T, n *tornet.Network, sb *servedBinary, a, b *chatProc) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 9*time.Minute)
	defer cancel()
	const before, after = 10, 20
	for i := range after {
		if i == before {
			pid := torChild(t, sb.cmd.Process.Pid)
			if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
		}
		a.send(t, chatCommand{Cmd: "send", Text: fmt.Sprintf("a%d", i)})
		b.send(t, chatCommand{Cmd: "send", Text: fmt.Sprintf("b%d", i)})
		time.Sleep(100 * time.Millisecond)
	}
	killed := time.Now()
	// Let the client tor forget the dead service's descriptor once the restarted one is published (docs/onion.md:
	// otherwise tor's per-HSDir requery limit keeps it away for about 3 minutes).
	for strings.Count(sb.stderr.String(), "onion: service descriptor published") < 2 {
		if time.Since(killed) > 2*time.Minute {
			t.Fatal("the relay did not publish again within 2 minutes of tor's death")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := n.ForgetOnionServices(ctx); err != nil {
		t.Fatal(err)
	}
	for _, side := range []struct {
		p      *chatProc
		prefix string
	}{{b, "a"}, {a, "b"}} {
		for i := range after {
			want := fmt.Sprintf("%s%d", side.prefix, i)
			if m := side.p.waitFor(t, 4*time.Minute, "message", nil); m.Text != want {
				t.Fatalf("got %q, want %q (lost, reordered or repeated)", m.Text, want)
			}
		}
	}
	t.Logf("every message through %v after tor was killed", time.Since(killed).Round(time.Millisecond))
	a.send(t, chatCommand{Cmd: "send", Text: "end"})
	if m := b.waitFor(t, time.Minute, "message", nil); m.Text != "end" {
		t.Fatalf("after the run: %q (a repeat?)", m.Text)
	}
	for _, p := range []*chatProc{a, b} {
		p.mu.Lock()
		offline := false
		for _, e := range p.seen {
			offline = offline || e.Type == "state" && e.Online != nil && !*e.Online
		}
		p.mu.Unlock()
		if !offline {
			t.Errorf("a client never lost its connection: tor's death did not reach it")
		}
	}
}
