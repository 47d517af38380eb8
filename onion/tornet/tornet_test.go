package tornet

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"os"
	"syscall"
	"testing"
	"time"
)

func TestRunningNicks(t *testing.T) {
	doc := []byte("network-status-version 3\n" +
		"r auth0 AAAA BBBB 2026-01-01 00:00:00 127.0.0.1 5000 0\n" +
		"s Authority Fast Guard HSDir Running Stable V2Dir Valid\n" +
		"r relay0 CCCC DDDD 2026-01-01 00:00:00 127.0.0.1 5001 0\n" +
		"s Fast Valid\n" +
		"r relay1 EEEE FFFF 2026-01-01 00:00:00 127.0.0.1 5002 0\n" +
		"s Running Valid\n")
	got := runningNicks(doc)
	for nick, want := range map[string]bool{"auth0": true, "relay0": false, "relay1": true, "nobody": false} {
		if got[nick] != want {
			t.Errorf("running[%s] = %v, want %v", nick, got[nick], want)
		}
	}
}

// TestNetwork builds the network and asks the client for an onion service nobody published: the client must
// fetch from the network's HSDirs and answer "descriptor not found", which proves it bootstrapped on our
// authorities alone. Teardown must leave no tor running.
func TestNetwork(t *testing.T) {
	var pids []int
	t.Run("up", func(t *testing.T) {
		start := time.Now()
		n := Start(t)
		t.Logf("network up in %v", time.Since(start).Round(time.Millisecond))
		pids = n.PIDs()
		if len(pids) != numAuthorities+numRelays+1 {
			t.Fatalf("%d tors running, want %d", len(pids), numAuthorities+numRelays+1)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		// A valid v3 address (right checksum) that no one publishes.
		pub, _, _ := ed25519.GenerateKey(rand.Reader)
		_, err := n.DialContext(ctx, "tcp", OnionAddress(pub)+".onion:80")
		var se *SOCKSError
		if !errors.As(err, &se) || se.Code != SOCKSDescriptorNotFound {
			t.Fatalf("dial unknown onion: %v, want SOCKS reply 0x%02X", err, SOCKSDescriptorNotFound)
		}
	})
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			// A zombie would still answer; we waited for every child, so none should be left.
			p, _ := os.FindProcess(pid)
			t.Errorf("tor pid %d still exists after teardown (%v, %v)", pid, err, p)
		}
	}
}
