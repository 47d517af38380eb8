package protocol_test

import (
	"bytes"
	"strconv"
	"strings"
	"testing"

	"github.com/cleanrelay/cleanrelay/relay/internal/vectors"
	"github.com/cleanrelay/cleanrelay/relay/protocol"
)

// TestVectors runs the protocol test vectors of testdata/protocol that this package's functions answer (the
// relay's request parser runs the request vectors; e2e/unit/proto-vectors.test.mjs runs them all against the
// browser client's proto.mjs).
func TestVectors(t *testing.T) {
	vs, err := vectors.Read()
	if err != nil {
		t.Fatal(err)
	}
	ran := 0
	for _, v := range vs {
		if v.Kind == "request" {
			continue
		}
		ran++
		t.Run(v.Name, func(t *testing.T) {
			var err error
			switch v.Kind {
			case "constants":
				for k, want := range map[string]string{
					"subprotocol": protocol.Subprotocol, "send header": strconv.Itoa(protocol.SendHeaderLen),
					"deliver header": strconv.Itoa(protocol.DeliverHeaderLen), "max control": strconv.Itoa(protocol.MaxControl),
					"max seq": strconv.FormatUint(protocol.MaxSeq, 10),
				} {
					if got := v.Get(k); got != want {
						t.Errorf("%s: vector says %s, package protocol %s", k, got, want)
					}
				}
			case "deliver":
				var d protocol.Deliver
				d, err = protocol.ParseDeliver(v.Hex("frame"))
				if err == nil && v.Success {
					got := []string{strconv.Itoa(int(d.Ch)), strconv.FormatUint(d.Seq, 10), strconv.Itoa(int(d.From))}
					want := []string{v.Get("ch"), v.Get("seq"), v.Get("from")}
					if strings.Join(got, " ") != strings.Join(want, " ") || !bytes.Equal(d.Payload, v.Hex("payload")) {
						t.Errorf("got ch, seq, from %v payload %x; want %v %x", got, d.Payload, want, v.Hex("payload"))
					}
				}
			case "send":
				ch, _ := strconv.Atoi(v.Get("ch"))
				var frame []byte
				frame, err = protocol.AppendSend(nil, ch, v.Hex("payload"))
				if err == nil && v.Success && !bytes.Equal(frame, v.Hex("frame")) {
					t.Errorf("got %x, want %x", frame, v.Hex("frame"))
				}
			case "control":
				var typ string
				typ, err = protocol.CheckControl([]byte(v.Get("message")))
				if err == nil && v.Success && typ != v.Get("type") {
					t.Errorf("type %q, want %q", typ, v.Get("type"))
				}
			}
			checkVerdict(t, v, err)
		})
	}
	if ran == 0 {
		t.Fatal("no vectors ran")
	}
}

// checkVerdict checks that err is what v expects: none, or one whose text holds v's error header.
func checkVerdict(t *testing.T, v *vectors.Vector, err error) {
	t.Helper()
	switch {
	case v.Success && err != nil:
		t.Errorf("failed: %v", err)
	case !v.Success && err == nil:
		t.Errorf("succeeded, want an error with %q", v.Get("error"))
	case !v.Success && !strings.Contains(err.Error(), v.Get("error")):
		t.Errorf("error %q, want one with %q", err, v.Get("error"))
	}
}

// TestVectorHeadersAreChecked: a vector with a header its kind does not have, or without a verdict, is refused.
func TestVectorHeadersAreChecked(t *testing.T) {
	for _, text := range []string{
		"kind: send\nexpect: success\nch: 1\npayload: 01\nframe: 0101\nseq: 4\n",
		"kind: send\nch: 1\npayload: 01\nframe: 0101\n",
		"kind: nothing\nexpect: success\n",
		"kind: send\nexpect: success\nexpect: error\n",
	} {
		if _, err := vectors.Parse("test", text); err == nil {
			t.Errorf("vector accepted:\n%s", text)
		}
	}
}
