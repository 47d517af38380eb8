package relay

import (
	"testing"

	"github.com/cleanrelay/cleanrelay/relay/internal/vectors"
)

// TestRequestVectors runs the request vectors of testdata/protocol through the relay's request parser: a
// request parses to its type, or is refused with its error code.
func TestRequestVectors(t *testing.T) {
	vs, err := vectors.Read()
	if err != nil {
		t.Fatal(err)
	}
	ran := 0
	for _, v := range vs {
		if v.Kind != "request" {
			continue
		}
		ran++
		t.Run(v.Name, func(t *testing.T) {
			var req request
			defer req.wipe()
			perr := parseRequest([]byte(v.Get("message")), &req)
			switch {
			case v.Success && perr != nil:
				t.Errorf("refused: %v", perr)
			case v.Success && req.T != v.Get("type"):
				t.Errorf("type %q, want %q", req.T, v.Get("type"))
			case !v.Success && perr == nil:
				t.Errorf("parsed, want %s", v.Get("code"))
			case !v.Success && perr.Code != v.Get("code"):
				t.Errorf("refused with %s (%s), want %s", perr.Code, perr.Msg, v.Get("code"))
			}
		})
	}
	if ran == 0 {
		t.Fatal("no request vectors ran")
	}
}
