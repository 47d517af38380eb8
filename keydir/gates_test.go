package keydir

import (
	"errors"
	"testing"
	"time"
)

// takeFrom is a ChallengeGate that asks another directory, as relay/cluster asks the other nodes.
type takeFrom struct {
	d     *Directory
	asked int
}

func (g *takeFrom) TakeChallenge(text, userID string, p Purpose) (time.Time, bool) {
	g.asked++
	return g.d.TakeChallenge(text, userID, p)
}

// TestChallengeGate: a challenge issued on a is used on b through the gate, once: used again on b or on a, it
// is unknown; a text not in the form the directory makes for this user is not asked for.
func TestChallengeGate(t *testing.T) {
	a, b, _ := replicaPair(t)
	acc := mustRegister(t, a, "alice")
	gate := &takeFrom{d: a}
	b.SetChallengeGate(gate)
	key := genKey(t, "alice", nil)
	ch, err := a.IssueChallenge(acc.ID, PurposePublishKey)
	if err != nil {
		t.Fatal(err)
	}
	sig := signText(t, key, ch)
	if _, err := b.PublishKey(acc.ID, armorPublic(t, key), ch, sig); err != nil {
		t.Fatalf("a's challenge used on b: %v", err)
	}
	for name, d := range map[string]*Directory{"b": b, "a": a} {
		if _, err := d.PublishKey(acc.ID, armorPublic(t, key), ch, sig); !errors.Is(err, ErrBadProof) {
			t.Fatalf("the challenge used again on %s: %v, want ErrBadProof", name, err)
		}
	}
	// A session challenge is not taken for a key upload, and stays on a.
	sc, _ := a.IssueChallenge(acc.ID, PurposeSession)
	if _, err := b.PublishKey(acc.ID, armorPublic(t, key), sc, signText(t, key, sc)); !errors.Is(err, ErrBadProof) {
		t.Fatalf("a session challenge for an upload on b: %v", err)
	}
	if _, err := a.VerifySession(acc.ID, sc, signText(t, key, sc)); err != nil {
		t.Fatalf("the session challenge on a, after b was refused it: %v", err)
	}
	asked := gate.asked
	for _, text := range []string{"made up", "cleanrelay proof of key possession\npurpose: publish-key\nuser: bob\nnonce: x\n"} {
		b.PublishKey(acc.ID, armorPublic(t, key), text, sig)
	}
	if gate.asked != asked {
		t.Fatalf("the gate was asked for %d texts not in the form made for alice", gate.asked-asked)
	}
}

// TestFailureRecord: a record set from another node is kept, with the table's bound; count 0 forgets it.
func TestFailureRecord(t *testing.T) {
	d, clk := newTestDir(t, func(c *Config) { c.MaxTrackedUsernames = 2 })
	d.SetFailureRecord("alice", 7, clk.Now())
	d.SetFailureRecord("bob", 7, clk.Now())
	d.SetFailureRecord("carol", 7, clk.Now()) // no room: both others back off
	if c, _ := d.FailureRecord("carol"); c != 0 || len(d.failures) != 2 {
		t.Fatalf("a third record in a table of two: carol %d, %d held", c, len(d.failures))
	}
	var be *BackoffError
	if _, err := d.StartAttempt("alice"); !errors.As(err, &be) {
		t.Fatalf("alice after a record of 7 failures: %v, want a backoff", err)
	}
	d.SetFailureRecord("alice", 0, time.Time{})
	end, err := d.StartAttempt("alice")
	if err != nil || end == nil {
		t.Fatalf("alice after her record was reset: %v", err)
	}
	end(true, true)
	if c, _ := d.FailureRecord("alice"); c != 0 {
		t.Fatalf("alice's record after a success: %d", c)
	}
}

// gateFunc is a LoginGate and a RateGate from functions.
type gateFunc struct {
	login func(string) (func(bool, bool), error)
	take  func(string, Action) error
}

func (g gateFunc) StartAttempt(name string) (func(bool, bool), error) { return g.login(name) }
func (g gateFunc) TakeAction(id string, act Action) error             { return g.take(id, act) }

// TestGates: Login asks the LoginGate (with the normalized name) and reports the outcome to what it returned;
// Allow and Search ask the RateGate.
func TestGates(t *testing.T) {
	d, _ := newTestDir(t, nil)
	acc := mustRegister(t, d, "alice")
	var names []string
	var outcomes []bool
	var acts []Action
	g := gateFunc{
		login: func(name string) (func(bool, bool), error) {
			names = append(names, name)
			return func(checked, ok bool) { outcomes = append(outcomes, ok) }, nil
		},
		take: func(id string, act Action) error {
			acts = append(acts, act)
			if act == ActionSearch {
				return ErrRateLimited
			}
			return nil
		},
	}
	d.SetLoginGate(g)
	d.SetRateGate(g)
	ctx := t.Context()
	d.Login(ctx, "Alice", "wrong")
	if _, _, err := d.Login(ctx, "alice", goodPassword); err != nil {
		t.Fatal(err)
	}
	if len(names) != 2 || names[0] != "alice" || len(outcomes) != 2 || outcomes[0] || !outcomes[1] {
		t.Fatalf("the login gate saw %q with outcomes %v", names, outcomes)
	}
	if c, _ := d.FailureRecord("alice"); c != 0 {
		t.Fatalf("the local table counted %d failures behind the gate", c)
	}
	if err := d.Allow(acc.ID, ActionKeyLookup); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Search(acc.ID, "al", 5); !errors.Is(err, ErrRateLimited) {
		t.Fatalf("a search the gate refuses: %v", err)
	}
	if len(acts) != 2 || acts[0] != ActionKeyLookup || acts[1] != ActionSearch {
		t.Fatalf("the rate gate saw %v", acts)
	}
}
