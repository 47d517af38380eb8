package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
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
