package bench

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// tallyKinds bounds how many different kinds of error a tally keeps by name; more are counted as "other".
const tallyKinds = 16

// tally counts a run's errors by what they were, so that a result can say why it has any. Safe for concurrent use.
type tally struct {
	// start, when set, is when the run began: each kind then says when it first happened, so that errors
	// from one event (a node's takeover, a timeout) read as one.
	start  time.Time
	mu     sync.Mutex
	counts map[string]int64
	first  map[string]time.Duration
	n      int64
}

func (t *tally) add(kind string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.counts == nil {
		t.counts, t.first = make(map[string]int64), make(map[string]time.Duration)
	}
	if _, ok := t.counts[kind]; !ok && len(t.counts) >= tallyKinds {
		kind = "other"
	}
	if _, ok := t.counts[kind]; !ok && !t.start.IsZero() {
		t.first[kind] = time.Since(t.start)
	}
	t.counts[kind]++
	t.n++
}

func (t *tally) total() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.n
}

// String lists the kinds, most frequent first: "3× room closed: slow; 1× send: broken pipe" ("" for none);
// with a start, "3× room closed: slow (first after 12.3 s); …".
func (t *tally) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	kinds := make([]string, 0, len(t.counts))
	for k := range t.counts {
		kinds = append(kinds, k)
	}
	slices.SortFunc(kinds, func(a, b string) int {
		return cmp.Or(cmp.Compare(t.counts[b], t.counts[a]), strings.Compare(a, b))
	})
	for i, k := range kinds {
		kinds[i] = fmt.Sprintf("%d× %s", t.counts[k], k)
		if !t.start.IsZero() {
			kinds[i] += fmt.Sprintf(" (first after %.1f s)", t.first[k].Seconds())
		}
	}
	return strings.Join(kinds, "; ")
}
