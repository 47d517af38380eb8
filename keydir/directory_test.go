package keydir

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

func TestRegisterTable(t *testing.T) {
	d, _ := newTestDir(t, nil)
	mustRegister(t, d, "alice")

	ok := Registration{Username: "bob", FullName: "Bob B", Email: "bob@example.org", Password: goodPassword}
	with := func(f func(*Registration)) Registration { r := ok; f(&r); return r }
	cases := map[string]struct {
		r    Registration
		want error
	}{
		"bad username":          {with(func(r *Registration) { r.Username = "b" }), ErrUsernameInvalid},
		"invisible username":    {with(func(r *Registration) { r.Username = "bo\u200bb" }), ErrUsernameInvalid},
		"empty full name":       {with(func(r *Registration) { r.FullName = "  " }), ErrFullNameInvalid},
		"control in full name":  {with(func(r *Registration) { r.FullName = "Bob\nB" }), ErrFullNameInvalid},
		"invisible full name":   {with(func(r *Registration) { r.FullName = "Bob\u200eB" }), ErrFullNameInvalid},
		"long full name":        {with(func(r *Registration) { r.FullName = strings.Repeat("é", 65) }), ErrFullNameInvalid},
		"bad email":             {with(func(r *Registration) { r.Email = "bob@" }), ErrEmailInvalid},
		"email with name":       {with(func(r *Registration) { r.Email = "Bob <bob@example.org>" }), ErrEmailInvalid},
		"short password":        {with(func(r *Registration) { r.Password = "Ab1!" }), ErrPasswordPolicy},
		"password no upper":     {with(func(r *Registration) { r.Password = "correct-h0rse" }), ErrPasswordPolicy},
		"password no lower":     {with(func(r *Registration) { r.Password = "CORRECT-H0RSE" }), ErrPasswordPolicy},
		"password no digit":     {with(func(r *Registration) { r.Password = "Correct-horse" }), ErrPasswordPolicy},
		"password no special":   {with(func(r *Registration) { r.Password = "CorrectH0rse" }), ErrPasswordPolicy},
		"password 73 bytes":     {with(func(r *Registration) { r.Password = "Aa1!" + strings.Repeat("x", 69) }), ErrPasswordTooLong},
		"duplicate upper":       {with(func(r *Registration) { r.Username = "ALICE" }), ErrUsernameTaken},
		"duplicate mixed":       {with(func(r *Registration) { r.Username = "AlIcE" }), ErrUsernameTaken},
		"duplicate fullwidth":   {with(func(r *Registration) { r.Username = "ａｌｉｃｅ" }), ErrUsernameTaken},
		"duplicate fw upper":    {with(func(r *Registration) { r.Username = "ＡＬＩＣＥ" }), ErrUsernameTaken},
		"duplicate zwsp":        {with(func(r *Registration) { r.Username = "ali\u200bce" }), ErrUsernameInvalid},
		"duplicate zwj":         {with(func(r *Registration) { r.Username = "alice\u200d" }), ErrUsernameInvalid},
		"duplicate soft hyphen": {with(func(r *Registration) { r.Username = "al\u00adice" }), ErrUsernameInvalid},
		"duplicate leading sp":  {with(func(r *Registration) { r.Username = " alice" }), ErrUsernameInvalid},
		"duplicate trailing sp": {with(func(r *Registration) { r.Username = "alice " }), ErrUsernameInvalid},
		"duplicate nbsp":        {with(func(r *Registration) { r.Username = "alice\u00a0" }), ErrUsernameInvalid},
		"duplicate cyrillic":    {with(func(r *Registration) { r.Username = "\u0430lice" }), ErrUsernameInvalid},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := d.Register(context.Background(), c.r)
			if !errors.Is(err, c.want) {
				t.Fatalf("Register = %v, want %v", err, c.want)
			}
			if strings.Contains(err.Error(), c.r.Password) {
				t.Fatalf("error quotes the password: %v", err)
			}
		})
	}
	if n := d.Stats().Accounts; n != 1 {
		t.Fatalf("%d accounts after refused registrations, want 1", n)
	}
	// The refusals lost nothing: alice still logs in, bob can still register.
	if _, _, err := d.Login(context.Background(), "alice", goodPassword); err != nil {
		t.Fatalf("alice login after refusals: %v", err)
	}
	a, err := d.Register(context.Background(), ok)
	if err != nil {
		t.Fatalf("valid registration: %v", err)
	}
	if a.Username != "bob" || a.Email != "bob@example.org" || a.FullName != "Bob B" || a.ID == "" {
		t.Fatalf("account = %+v", a)
	}
}

func TestRegisterRequireEmail(t *testing.T) {
	d, _ := newTestDir(t, func(c *Config) { c.RequireEmail = true })
	_, err := d.Register(context.Background(), Registration{Username: "alice", FullName: "A", Password: goodPassword})
	if !errors.Is(err, ErrEmailInvalid) {
		t.Fatalf("missing required e-mail: %v", err)
	}
}

func TestRegisterMaxAccounts(t *testing.T) {
	d, _ := newTestDir(t, func(c *Config) { c.MaxAccounts = 1 })
	mustRegister(t, d, "alice")
	_, err := d.Register(context.Background(), Registration{Username: "bob", FullName: "B", Password: goodPassword})
	if !errors.Is(err, ErrTooManyAccounts) {
		t.Fatalf("over MaxAccounts: %v", err)
	}
}

// Parallel registrations of one name in its different spellings give exactly
// one account.
func TestRegisterConcurrentOneName(t *testing.T) {
	d, _ := newTestDir(t, nil)
	variants := []string{"carol", "CAROL", "Carol", "ｃａｒｏｌ", "ＣＡＲＯＬ", "cArOl", "caroL", "CARol"}
	var wg sync.WaitGroup
	var okN, takenN atomic.Int32
	errs := make(chan error, len(variants))
	for _, v := range variants {
		wg.Go(func() {
			_, err := d.Register(context.Background(), Registration{Username: v, FullName: "C", Password: goodPassword})
			switch {
			case err == nil:
				okN.Add(1)
			case errors.Is(err, ErrUsernameTaken):
				takenN.Add(1)
			default:
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("unexpected error: %v", err)
	}
	if okN.Load() != 1 || int(takenN.Load()) != len(variants)-1 {
		t.Fatalf("%d succeeded, %d taken; want 1 and %d", okN.Load(), takenN.Load(), len(variants)-1)
	}
	if n := d.Stats().Accounts; n != 1 {
		t.Fatalf("%d accounts", n)
	}
	if got := len(d.names); got != 1 {
		t.Fatalf("search index has %d names", got)
	}
}

func TestLogin(t *testing.T) {
	d, _ := newTestDir(t, nil)
	acc := mustRegister(t, d, "alice")
	ctx := context.Background()

	tok, s, err := d.Login(ctx, "ＡＬＩＣＥ", goodPassword)
	if err != nil {
		t.Fatalf("login with another spelling: %v", err)
	}
	if s.UserID != acc.ID || s.Username != "alice" || s.FullName != "Test alice" {
		t.Fatalf("session = %+v", s)
	}
	got, err := d.Authenticate(tok)
	if err != nil || got != s {
		t.Fatalf("Authenticate = %+v, %v; want %+v", got, err, s)
	}

	for name, c := range map[string]struct{ user, pw string }{
		"wrong password":   {"alice", "Wrong-h0rse"},
		"unknown user":     {"nobody", goodPassword},
		"invalid username": {"x\u200by", goodPassword},
		"empty":            {"", ""},
		"over 72 bytes":    {"alice", goodPassword + strings.Repeat("z", 72)},
	} {
		t.Run(name, func(t *testing.T) {
			_, _, err := d.Login(ctx, c.user, c.pw)
			if err != ErrBadCredentials {
				t.Fatalf("Login = %v, want exactly ErrBadCredentials", err)
			}
		})
	}
}

// A password longer than 72 bytes whose first 72 bytes are the real password
// must not log in: bcrypt would ignore the tail, we do not.
func TestLoginNoTruncation(t *testing.T) {
	d, _ := newTestDir(t, nil)
	pw := "Aa1!" + strings.Repeat("x", 68) // exactly 72 bytes
	if _, err := d.Register(context.Background(), Registration{Username: "alice", FullName: "A", Password: pw}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := d.Login(context.Background(), "alice", pw); err != nil {
		t.Fatalf("72-byte password: %v", err)
	}
	if _, _, err := d.Login(context.Background(), "alice", pw+"extra"); err != ErrBadCredentials {
		t.Fatalf("72-byte password plus tail: %v, want ErrBadCredentials", err)
	}
}

// Unknown users cost one bcrypt comparison, like known ones (the timing itself
// is measured by BenchmarkLogin).
func TestLoginUnknownUserDoesBcryptWork(t *testing.T) {
	d, _ := newTestDir(t, nil)
	mustRegister(t, d, "alice")
	var n atomic.Int32
	d.bcryptHook = func() { n.Add(1) }
	for _, user := range []string{"alice", "nobody", "in valid"} {
		before := n.Load()
		if _, _, err := d.Login(context.Background(), user, "Wrong-h0rse"); err != ErrBadCredentials {
			t.Fatalf("%q: %v", user, err)
		}
		if n.Load() != before+1 {
			t.Fatalf("%q: %d bcrypt comparisons, want 1", user, n.Load()-before)
		}
	}
}

func TestLoginBackoff(t *testing.T) {
	d, clk := newTestDir(t, func(c *Config) {
		c.LoginFreeFailures = 3
		c.LoginBackoffBase = time.Second
		c.LoginBackoffMax = 4 * time.Second
	})
	mustRegister(t, d, "alice")
	ctx := context.Background()
	for _, user := range []string{"alice", "ghost"} { // unknown names back off the same way
		t.Run(user, func(t *testing.T) {
			for i := range 3 {
				if _, _, err := d.Login(ctx, user, "Wrong-h0rse"); err != ErrBadCredentials {
					t.Fatalf("failure %d: %v", i+1, err)
				}
			}
			for _, wait := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second} {
				_, _, err := d.Login(ctx, user, goodPassword)
				var be *BackoffError
				if !errors.As(err, &be) || !errors.Is(err, ErrTooManyAttempts) || be.RetryAfter != wait {
					t.Fatalf("during backoff: %v, want retry after %v", err, wait)
				}
				clk.Advance(wait - time.Millisecond)
				if _, _, err := d.Login(ctx, user, goodPassword); !errors.Is(err, ErrTooManyAttempts) {
					t.Fatalf("just before the wait ends: %v", err)
				}
				clk.Advance(time.Millisecond)
				if _, _, err := d.Login(ctx, user, "Wrong-h0rse"); err != ErrBadCredentials {
					t.Fatalf("after the wait: %v", err)
				}
			}
			clk.Advance(4 * time.Second)
			_, _, err := d.Login(ctx, user, goodPassword)
			if user == "alice" && err != nil {
				t.Fatalf("right password after the wait: %v", err)
			}
			if user == "ghost" && err != ErrBadCredentials {
				t.Fatalf("unknown user after the wait: %v", err)
			}
		})
	}
	// A success reset alice's record.
	if _, _, err := d.Login(ctx, "alice", "Wrong-h0rse"); err != ErrBadCredentials {
		t.Fatalf("after success: %v", err)
	}
	// Failures are forgotten after LoginFailureMemory.
	clk.Advance(2 * time.Hour)
	if _, _, err := d.Login(ctx, "ghost", "Wrong-h0rse"); err != ErrBadCredentials {
		t.Fatalf("after the memory: %v", err)
	}
}

// A burst of parallel guesses cannot get more than LoginFreeFailures passwords
// checked.
func TestLoginParallelBurst(t *testing.T) {
	d, _ := newTestDir(t, func(c *Config) { c.LoginFreeFailures = 3 })
	mustRegister(t, d, "alice")
	var checked, refused atomic.Int32
	var wg sync.WaitGroup
	for range 12 {
		wg.Go(func() {
			_, _, err := d.Login(context.Background(), "alice", "Wrong-h0rse")
			switch {
			case err == ErrBadCredentials:
				checked.Add(1)
			case errors.Is(err, ErrTooManyAttempts):
				refused.Add(1)
			default:
				t.Errorf("unexpected: %v", err)
			}
		})
	}
	wg.Wait()
	if checked.Load() > 3 || checked.Load()+refused.Load() != 12 {
		t.Fatalf("%d checked, %d refused; want at most 3 checked", checked.Load(), refused.Load())
	}
}

func TestLoginContextCancelled(t *testing.T) {
	d, _ := newTestDir(t, func(c *Config) { c.MaxConcurrentHashes = 1 })
	mustRegister(t, d, "alice")
	d.hashes.all <- struct{}{} // occupy the only slot
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := d.Login(ctx, "alice", goodPassword); !errors.Is(err, context.Canceled) {
		t.Fatalf("Login with cancelled ctx = %v", err)
	}
	<-d.hashes.all
	// The cancelled attempt did not count as a failure.
	d.mu.RLock()
	f := d.failures["alice"]
	d.mu.RUnlock()
	if f != nil && (f.count != 0 || f.inflight != 0) {
		t.Fatalf("failure record after cancel: %+v", *f)
	}
}

func TestFailureTableBounded(t *testing.T) {
	d, _ := newTestDir(t, func(c *Config) { c.MaxTrackedUsernames = 2 })
	for _, u := range []string{"aaa", "bbb", "ccc", "ddd"} {
		if _, _, err := d.Login(context.Background(), u, "Wrong-h0rse"); err != ErrBadCredentials {
			t.Fatal(err)
		}
	}
	if n := d.Stats().TrackedFailures; n > 2 {
		t.Fatalf("%d tracked usernames, bound is 2", n)
	}
}

func TestSearch(t *testing.T) {
	d, clk := newTestDir(t, func(c *Config) { c.MaxSearchResults = 3; c.SearchBurst = 2; c.SearchInterval = time.Second })
	me := mustRegister(t, d, "zed")
	for _, n := range []string{"anna", "anne", "annika", "annabel", "bob", "an.x"} {
		mustRegister(t, d, n)
	}
	got, err := d.Search(me.ID, "ANN", 10)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range got {
		names = append(names, p.Username)
	}
	if strings.Join(names, ",") != "anna,annabel,anne" {
		t.Fatalf("search ANN = %v (bounded to 3, name order)", names)
	}
	got, err = d.Search(me.ID, "an.", 0)
	if err != nil || len(got) != 1 || got[0].Username != "an.x" {
		t.Fatalf("search an. = %+v, %v", got, err)
	}
	if _, err := d.Search(me.ID, "b", 1); !errors.Is(err, ErrRateLimited) {
		t.Fatalf("third search in a burst of 2: %v", err)
	}
	clk.Advance(time.Second)
	if got, err := d.Search(me.ID, "b", 1); err != nil || len(got) != 1 {
		t.Fatalf("after refill: %v, %v", got, err)
	}
	for _, p := range []string{"", "a b", "ä", strings.Repeat("a", 33)} {
		clk.Advance(time.Second)
		if _, err := d.Search(me.ID, p, 1); !errors.Is(err, ErrBadRequest) {
			t.Errorf("prefix %q: %v", p, err)
		}
	}
	clk.Advance(time.Second)
	if _, err := d.Search("nobody", "a", 1); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown requester: %v", err)
	}
}

func TestConfigLimits(t *testing.T) {
	for name, c := range map[string]Config{
		"cost 9":        {BcryptCost: 9},
		"lifetime 59m":  {TokenLifetime: 59 * time.Minute},
		"lifetime 31d":  {TokenLifetime: 31 * 24 * time.Hour},
		"alg HS256":     {TokenAlgorithm: "HS256"},
		"rsa 2048 keys": {MinRSABits: 2048},
		"tiny tokens":   {MaxTokenBytes: 100},
		"negative":      {MaxAccounts: -1},
	} {
		if _, err := New(c); err == nil {
			t.Errorf("%s: New accepted it", name)
		}
	}
}

func TestDefaultBcryptCost(t *testing.T) {
	d, err := New(Config{TokenAlgorithm: "EdDSA"})
	if err != nil {
		t.Fatal(err)
	}
	a := mustRegister(t, d, "alice")
	d.mu.RLock()
	h := d.byID[a.ID].hash
	d.mu.RUnlock()
	if c, err := bcrypt.Cost(h); err != nil || c != 10 {
		t.Fatalf("stored hash cost %d, %v; want 10", c, err)
	}
	if c, err := bcrypt.Cost(d.dummyHash); err != nil || c != 10 {
		t.Fatalf("dummy hash cost %d, %v; want 10 (else unknown users answer faster)", c, err)
	}
	if cap(d.hashes.all) != runtime.GOMAXPROCS(0) {
		t.Fatalf("hash concurrency %d, want GOMAXPROCS", cap(d.hashes.all))
	}
}
