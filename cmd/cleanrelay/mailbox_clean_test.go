package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cleanrelay/cleanrelay/relay/client"
)

// mailTraffic is what mailboxTraffic sent through the relay's mailbox.
type mailTraffic struct {
	delivered [][]byte // fetched and acknowledged by the recipient
	expired   [][]byte // whose time to live ran out unread
	waiting   [][]byte // still waiting for the recipient
}

// mailboxTraffic has alice leave bob messages of random bytes (the relay cannot tell them from ciphertext):
// bob reads and acknowledges some, one expires unread, and n stay waiting.
func mailboxTraffic(ctx context.Context, t *testing.T, alice, bob *client.Account, waiting int) mailTraffic {
	t.Helper()
	var m mailTraffic
	put := func(size int, ttl time.Duration) []byte {
		t.Helper()
		p := make([]byte, size)
		rand.Read(p)
		if _, err := alice.PutMail(ctx, bob.Name, bob.Fingerprint(), p, ttl); err != nil {
			t.Fatalf("alice leaves a message: %v", err)
		}
		return p
	}
	// Larger than net/http's 4 KiB buffers, and smaller, so that both paths through them are taken.
	for _, size := range []int{200, 300, 20000} {
		m.delivered = append(m.delivered, put(size, 0))
	}
	m.expired = append(m.expired, put(250, time.Second))
	items, _, err := bob.FetchMail(ctx, alice.Name)
	if err != nil || len(items) != 4 {
		t.Fatalf("bob fetched %d items, %v; want 4", len(items), err)
	}
	var ids []string
	for i, it := range items[:3] {
		if string(it.Data) != string(m.delivered[i]) {
			t.Fatalf("item %d came back changed", i)
		}
		ids = append(ids, it.ID)
	}
	if err := bob.AckMail(ctx, alice.Name, ids); err != nil {
		t.Fatalf("bob acknowledges: %v", err)
	}
	for range waiting {
		m.waiting = append(m.waiting, put(200, 0))
	}
	time.Sleep(1100 * time.Millisecond)
	if items, _, err = bob.FetchMail(ctx, alice.Name); err != nil || len(items) != waiting {
		t.Fatalf("after the expiry bob sees %d items, %v; want %d", len(items), err, waiting)
	}
	return m
}

// add records every message of m as user data: none may reach the relay's output.
func (m mailTraffic) add(ud *userData) {
	for _, set := range [][][]byte{m.delivered, m.expired, m.waiting} {
		for _, p := range set {
			ud.add("mailbox message (base64)", base64.StdEncoding.EncodeToString(p)[:40])
		}
	}
}

// TestServeMailbox runs the real binary: mailbox traffic shows in /metrics (counts only) and in the memory
// budget's count; with --mailbox=false the routes say the mailbox is off and no mailbox metric is served.
func TestServeMailbox(t *testing.T) {
	for _, on := range []bool{true, false} {
		t.Run(fmt.Sprintf("mailbox=%v", on), func(t *testing.T) {
			_, lines, _ := startServeLines(t, 2, nil, "--local-only", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
				fmt.Sprintf("--mailbox=%v", on), "--mailbox-max-per-user", "3")
			url := field(t, lines[0], "cleanrelay: serving on ")
			admin := field(t, lines[1], "cleanrelay: admin on ")
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			ra := relayAccess{url: url, http: &http.Client{Timeout: 30 * time.Second}}
			alice, bob := register(ctx, t, ra, &userData{}, "alice"), register(ctx, t, ra, &userData{}, "bob")
			_, err := alice.PutMail(ctx, bob.Name, bob.Fingerprint(), make([]byte, 1000), 0)
			_, metrics := httpGet(t, admin+"metrics", "")
			if !on {
				if err == nil || !strings.Contains(err.Error(), "mailbox_off") {
					t.Fatalf("put with the mailbox off: %v", err)
				}
				if strings.Contains(metrics, "cleanrelay_mailbox_") {
					t.Fatal("mailbox metrics served with the mailbox off")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for range 2 {
				if _, err := alice.PutMail(ctx, bob.Name, bob.Fingerprint(), make([]byte, 1000), 0); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := alice.PutMail(ctx, bob.Name, bob.Fingerprint(), make([]byte, 1000), 0); err == nil || !strings.Contains(err.Error(), "507") {
				t.Fatalf("a fourth message with --mailbox-max-per-user 3: %v", err)
			}
			_, metrics = httpGet(t, admin+"metrics", "")
			if v := sample(t, metrics, "cleanrelay_mailbox_held"); v != 3 {
				t.Fatalf("cleanrelay_mailbox_held %v, want 3", v)
			}
			if v := sample(t, metrics, "cleanrelay_mailbox_bytes"); v < 3000 {
				t.Fatalf("cleanrelay_mailbox_bytes %v", v)
			}
			items, _, err := bob.FetchMail(ctx, alice.Name)
			if err != nil || len(items) != 3 {
				t.Fatalf("fetched %d, %v", len(items), err)
			}
			if err := bob.AckMail(ctx, alice.Name, []string{items[0].ID}); err != nil {
				t.Fatal(err)
			}
			_, metrics = httpGet(t, admin+"metrics", "")
			if sample(t, metrics, "cleanrelay_mailbox_delivered_total") != 1 || sample(t, metrics, "cleanrelay_mailbox_held") != 2 {
				t.Fatalf("after one acknowledgement:\n%s", metrics)
			}
			if strings.Contains(metrics, alice.Name) || strings.Contains(metrics, bob.Name) {
				t.Fatal("a metric names a user")
			}
		})
	}
}
