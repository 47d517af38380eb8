package accounts

import (
	"fmt"
	"log/slog"
	"testing"

	"github.com/cleanrelay/cleanrelay/keydir"
	"github.com/cleanrelay/cleanrelay/relay"
)

// The sweep that makes room in a full dialog table must not turn the live dialogs' room ids and
// capabilities into Go strings, which nothing could overwrite: it allocates nothing at all.
func TestDialogSweepMakesNoTexts(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	dir, err := keydir.New(keydir.Config{TokenAlgorithm: "EdDSA"})
	if err != nil {
		t.Fatal(err)
	}
	a := New(dir, Config{}, log)
	srv, err := relay.New(relay.Config{Authenticator: a}, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	a.Attach(srv)
	const live = 200
	for i := range live {
		pair := [2]string{fmt.Sprint("a", i), fmt.Sprint("b", i)}
		d, err := srv.OpenDialog(pair)
		if err != nil {
			t.Fatal(err)
		}
		a.dialogs[pair] = dialogRef{room: d}
	}
	allocs := testing.AllocsPerRun(5, func() {
		a.mu.Lock()
		a.sweepDialogsLocked()
		a.mu.Unlock()
	})
	if allocs != 0 || len(a.dialogs) != live {
		t.Fatalf("the sweep of %d live dialogs made %v allocations and kept %d", live, allocs, len(a.dialogs))
	}
}
