package snapmetrics

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

type stats struct{ held, taken int }

func TestCollector(t *testing.T) {
	s := stats{held: 3, taken: 7}
	c := New(func() stats { return s },
		Gauge("test_held", "Things held.", func(s stats) float64 { return float64(s.held) }),
		Counter("test_taken_total", "Things taken.", func(s stats) float64 { return float64(s.taken) }))
	if problems, err := testutil.CollectAndLint(c); err != nil || len(problems) > 0 {
		t.Fatalf("lint: %v %v", err, problems)
	}
	s.held = 4 // each scrape takes a new snapshot
	want := `
# HELP test_held Things held.
# TYPE test_held gauge
test_held 4
# HELP test_taken_total Things taken.
# TYPE test_taken_total counter
test_taken_total 7
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
}
