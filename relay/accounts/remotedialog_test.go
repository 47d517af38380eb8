package accounts_test

import (
	"sync"
	"testing"

	"github.com/cleanrelay/cleanrelay/keydir"
	"github.com/cleanrelay/cleanrelay/relay"
	"github.com/cleanrelay/cleanrelay/relay/client"
	"github.com/cleanrelay/cleanrelay/relay/internal/relaytest"
)

// TestRemoteDialogNotice: the OnDialogNotice hook hears what the other user's sessions were told, and a notice
// handed back with relay.Server.NotifyRemoteDialog (as another node of a cluster does) reaches that user's
// sessions; one whose room or capability is not base64url text is dropped, so it cannot shape the JSON.
func TestRemoteDialogNotice(t *testing.T) {
	ar := startAccounts(t, relay.Config{}, keydir.Config{})
	var mu sync.Mutex
	var heard [][4]string
	ar.acc.OnDialogNotice(func(user, room, capability, from string) {
		mu.Lock()
		heard = append(heard, [4]string{user, room, capability, from})
		mu.Unlock()
	})
	alice, bob := ar.keyedUser(t, "alice"), ar.keyedUser(t, "bob")
	cb := bob.mustDial()
	room, capability := alice.dialog("bob")
	if ev := relaytest.NextEvent(t, cb); ev.Kind != client.KindDialog || ev.Room != room {
		t.Fatalf("bob got %+v, want the dialog notice", ev)
	}
	mu.Lock()
	got := heard
	mu.Unlock()
	if len(got) != 1 || got[0] != [4]string{"bob", room, capability, "alice"} {
		t.Fatalf("the hook heard %q, want bob told of alice's dialog", got)
	}

	ar.srv.NotifyRemoteDialog("bob", `x","t":"closed`, capability, "mallory")
	ar.srv.NotifyRemoteDialog("bob", room, "", "mallory")
	ar.srv.NotifyRemoteDialog("bob", room, capability, "carol")
	if ev := relaytest.NextEvent(t, cb); ev.Kind != client.KindDialog || ev.User != "carol" || ev.Room != room || ev.Cap != capability {
		t.Fatalf("bob got %+v, want carol's notice (and nothing of the malformed ones)", ev)
	}
}
