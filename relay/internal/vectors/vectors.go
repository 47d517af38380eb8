// Package vectors reads the protocol test vectors of testdata/protocol, for the Go tests that run them.
package vectors

import (
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
)

// A vector file is lines of "key: value", one case per file (docs/protocol.md §9). keys lists, for each
// kind, the headers a vector of that kind may have; any other header is an error, so a vector that a runner
// would silently half-read cannot be written.
var keys = map[string][]string{
	"constants": {"subprotocol", "send header", "deliver header", "max control", "max seq"},
	"deliver":   {"frame", "ch", "seq", "from", "payload", "error"},
	"send":      {"ch", "payload", "frame", "error"},
	"control":   {"message", "type", "error"},
	"request":   {"message", "type", "code"},
}

// Vector is one test case.
type Vector struct {
	Name    string
	Kind    string
	Success bool // expect: success (else expect: error)
	Headers map[string]string
}

// Get returns a header, which must be present.
func (v *Vector) Get(k string) string {
	s, ok := v.Headers[k]
	if !ok {
		panic(fmt.Sprintf("%s: no %q header", v.Name, k))
	}
	return s
}

// Hex returns a header as bytes written in hex.
func (v *Vector) Hex(k string) []byte {
	b, err := hex.DecodeString(v.Get(k))
	if err != nil {
		panic(fmt.Sprintf("%s: %s: %v", v.Name, k, err))
	}
	return b
}

// Dir is testdata/protocol of the repository.
func Dir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..", "testdata", "protocol")
}

// Read returns every vector, sorted by name.
func Read() ([]*Vector, error) {
	names, err := filepath.Glob(filepath.Join(Dir(), "*.txt"))
	if err != nil {
		return nil, err
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("no vectors in %s", Dir())
	}
	sort.Strings(names)
	var vs []*Vector
	for _, name := range names {
		text, err := os.ReadFile(name)
		if err != nil {
			return nil, err
		}
		v, err := Parse(filepath.Base(name), string(text))
		if err != nil {
			return nil, err
		}
		vs = append(vs, v)
	}
	return vs, nil
}

// Parse reads one vector file.
func Parse(name, text string) (*Vector, error) {
	v := &Vector{Name: name, Headers: map[string]string{}}
	for _, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		k, val, ok := strings.Cut(line, ": ")
		if !ok && strings.HasSuffix(line, ":") {
			k, val, ok = strings.TrimSuffix(line, ":"), "", true
		}
		if !ok {
			return nil, fmt.Errorf("%s: line %.40q is not key: value", name, line)
		}
		if _, dup := v.Headers[k]; dup {
			return nil, fmt.Errorf("%s: header %q twice", name, k)
		}
		v.Headers[k] = val
	}
	v.Kind = v.Headers["kind"]
	allowed, ok := keys[v.Kind]
	if !ok {
		return nil, fmt.Errorf("%s: unknown kind %q", name, v.Kind)
	}
	switch v.Headers["expect"] {
	case "success":
		v.Success = true
	case "error":
	default:
		return nil, fmt.Errorf("%s: expect must be success or error, not %q", name, v.Headers["expect"])
	}
	for k := range v.Headers {
		if k != "kind" && k != "expect" && k != "comment" && !slices.Contains(allowed, k) {
			return nil, fmt.Errorf("%s: unknown header %q for kind %s", name, k, v.Kind)
		}
	}
	delete(v.Headers, "kind")
	delete(v.Headers, "expect")
	delete(v.Headers, "comment")
	return v, nil
}
