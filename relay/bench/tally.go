package bench

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"sync"
)

// tallyKinds bounds how many different kinds of error a tally keeps by name; more are counted as "other".
const tallyKinds = 16

// tally counts a run's errors by what they were, so that a result can say why it has any. Safe for concurrent use.
type tally struct {
	mu     sync.Mutex
	counts map[string]int64
	n      int64
}

func (t *tally) add(kind string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.counts == nil {
		t.counts = make(map[string]int64)
	}
	if _, ok := t.counts[kind]; !ok && len(t.counts) >= tallyKinds {
		kind = "other"
	}
	t.counts[kind]++
	t.n++
}

func (t *tally) total() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.n
}

// String lists the kinds, most frequent first: "3× room closed: slow; 1× send: broken pipe" ("" for none).
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
	}
	return strings.Join(kinds, "; ")
}
