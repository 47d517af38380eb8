package main

import (
	"flag"
	"fmt"

	"golang.org/x/sys/unix"
)

// hardenFlags control process-level protections of what the relay holds in memory.
type hardenFlags struct {
	allowCoreDumps bool
}

func (h *hardenFlags) register(fs *flag.FlagSet) {
	fs.BoolVar(&h.allowCoreDumps, "allow-core-dumps", false, "let the process dump core (for debugging only: a core file holds rooms, tokens and keys)")
}

// apply turns core dumps off (RLIMIT_CORE 0) and makes the process non-dumpable, so that a crash writes no
// memory to disk and other processes of the same user cannot read its memory, unless the operator allows it.
func (h *hardenFlags) apply() error {
	if h.allowCoreDumps {
		return nil
	}
	if err := unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{Cur: 0, Max: 0}); err != nil {
		return fmt.Errorf("failed to turn core dumps off: %w", err)
	}
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("failed to make the process non-dumpable: %w", err)
	}
	return nil
}
