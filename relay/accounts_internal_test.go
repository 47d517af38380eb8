package relay

import (
	"fmt"
	"log/slog"
	"testing"

	"github.com/cleanrelay/cleanrelay/keydir"
)

// The sweep that makes room in a full dialog table must not turn the live dialogs' room ids and
// capabilities into Go strings, which nothing could overwrite: it allocates nothing at all.
func TestDialogSweepMakesNoTexts(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	srv, err := New(Config{}, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := keydir.New(keydir.Config{TokenAlgorithm: "EdDSA"})
	if err != nil {
		t.Fatal(err)
	}
	a := NewAccounts(srv, dir, AccountsConfig{}, log)
	const live = 200
	for i := range live {
		r, perr := srv.hub.openRoom(2, []string{fmt.Sprint("a", i), fmt.Sprint("b", i)})
		if perr != nil {
			t.Fatal(perr.msg)
		}
		a.dialogs[[2]string{fmt.Sprint("a", i), fmt.Sprint("b", i)}] = dialogRef{room: r}
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
