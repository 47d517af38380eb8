package e2e

import "fmt"

// History follows the chain of accepted commits of one room, including epochs this member is not in,
// and catches a commit the relay replays or one that forks the chain.
type History struct {
	Number uint32
	ID     [HashSize]byte
	used   map[[HashSize]byte]bool // key packages and prekeys named by accepted commits
}

// Check tells whether c may be the next epoch: it returns ErrOldEpoch for an epoch number at or below
// the current one (a replay, or the loser of a race, which the caller ignores quietly when it equals the
// current number), ErrFork when it does not follow the current epoch, and ErrReplayed when it names a key
// package an earlier commit already used. A member with no history yet (Number 0) takes any commit
// that includes its own fresh key package, which an old commit cannot.
func (h *History) Check(c *Commit) error {
	if h.Number != 0 && c.Epoch <= h.Number {
		return fmt.Errorf("commit for epoch %d, now at %d: %w", c.Epoch, h.Number, ErrOldEpoch)
	}
	if h.Number != 0 && (c.Epoch != h.Number+1 || c.Prev != h.ID) {
		return fmt.Errorf("commit for epoch %d: %w", c.Epoch, ErrFork)
	}
	for _, m := range c.Members {
		if m.Member != c.Committer && h.used[m.Hash] {
			return fmt.Errorf("commit for epoch %d reuses a key package of member %d: %w", c.Epoch, m.Member, ErrReplayed)
		}
	}
	return nil
}

// Accept records c as the current epoch; call it after Check.
func (h *History) Accept(ctx []byte, c *Commit) {
	if h.used == nil {
		h.used = map[[HashSize]byte]bool{}
	}
	for _, m := range c.Members {
		if m.Member != c.Committer {
			h.used[m.Hash] = true
		}
	}
	h.Number, h.ID = c.Epoch, c.ID(ctx)
}
