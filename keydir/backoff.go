package keydir

import "time"

// failures is the recent login failure record of one normalized username,
// existing or not. Guarded by Directory.mu.
type failures struct {
	count    int       // failed attempts since the last success or since forgotten
	inflight int       // attempts being checked right now
	last     time.Time // time of the last failure
}

// wait returns how long after f.last the next attempt must wait.
func (d *Directory) wait(count int) time.Duration {
	over := count - d.cfg.LoginFreeFailures
	if over < 0 {
		return 0
	}
	w := d.cfg.LoginBackoffBase
	for i := 0; i < over && w < d.cfg.LoginBackoffMax; i++ {
		w *= 2
	}
	return min(w, d.cfg.LoginBackoffMax)
}

// startAttempt admits a login attempt for name or returns a *BackoffError.
// Attempts in flight count as failures until they end, so a burst of parallel
// guesses cannot slip past the limit before the first of them fails.
// It reports whether the attempt is tracked (and endAttempt must be called).
func (d *Directory) startAttempt(name string) (bool, error) {
	now := d.cfg.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	f := d.failures[name]
	if f != nil && f.inflight == 0 && now.Sub(f.last) > d.cfg.LoginFailureMemory {
		delete(d.failures, name)
		f = nil
	}
	if f == nil {
		f = &failures{}
		if !d.trackLocked(name, f, now) {
			return false, nil // table full of live records: this attempt goes untracked
		}
	}
	if f.count+f.inflight >= d.cfg.LoginFreeFailures {
		if f.inflight > 0 {
			return false, &BackoffError{RetryAfter: d.cfg.LoginBackoffBase}
		}
		if left := f.last.Add(d.wait(f.count)).Sub(now); left > 0 {
			return false, &BackoffError{RetryAfter: left}
		}
	}
	f.inflight++
	return true, nil
}

// trackLocked adds a record, making room if the table is full: first by dropping
// forgotten records, then one record that is not backing off. It reports false
// if no room could be made.
func (d *Directory) trackLocked(name string, f *failures, now time.Time) bool {
	if len(d.failures) >= d.cfg.MaxTrackedUsernames {
		for n, g := range d.failures {
			if g.inflight == 0 && now.Sub(g.last) > d.cfg.LoginFailureMemory {
				delete(d.failures, n)
			}
		}
	}
	if len(d.failures) >= d.cfg.MaxTrackedUsernames {
		for n, g := range d.failures {
			if g.inflight == 0 && g.count < d.cfg.LoginFreeFailures {
				delete(d.failures, n)
				break
			}
		}
	}
	if len(d.failures) >= d.cfg.MaxTrackedUsernames {
		return false
	}
	d.failures[name] = f
	return true
}

// endAttempt records the outcome of an attempt admitted by startAttempt.
// checked is false when the password was never compared (cancelled).
func (d *Directory) endAttempt(name string, checked, ok bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	f := d.failures[name]
	if f == nil {
		return
	}
	if f.inflight > 0 {
		f.inflight--
	}
	switch {
	case ok:
		delete(d.failures, name)
	case checked:
		f.count++
		f.last = d.cfg.Now()
	case f.count == 0 && f.inflight == 0:
		delete(d.failures, name)
	}
}

// LoginGate admits login attempts in place of the directory's own failure table, so that several nodes can
// share one backoff per username (docs/cluster.md §5). StartAttempt gets the normalized username and admits
// the attempt, returning the function that records its outcome (nil when the attempt is not tracked), or
// refuses it with a *BackoffError. end gets checked false when the password was never compared.
type LoginGate interface {
	StartAttempt(name string) (end func(checked, ok bool), err error)
}

// SetLoginGate makes Login ask g instead of the local failure table. Call it once, before serving.
func (d *Directory) SetLoginGate(g LoginGate) {
	d.mu.Lock()
	d.gate = g
	d.mu.Unlock()
}

// StartAttempt admits a login attempt for the normalized name against this directory's own failure table: what
// a LoginGate that decides here calls. It returns the function that records the outcome (nil: untracked) or a
// *BackoffError.
func (d *Directory) StartAttempt(name string) (end func(checked, ok bool), err error) {
	tracked, err := d.startAttempt(name)
	if err != nil || !tracked {
		return nil, err
	}
	return func(checked, ok bool) { d.endAttempt(name, checked, ok) }, nil
}

// FailureRecord returns the failures the local table holds for the normalized name (0 when none).
func (d *Directory) FailureRecord(name string) (count int, last time.Time) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if f := d.failures[name]; f != nil {
		return f.count, f.last
	}
	return 0, time.Time{}
}

// SetFailureRecord sets the failures of the normalized name to what another node decided (count 0: none),
// keeping the attempts in flight here. The table keeps its bound: a new record that finds no room is dropped.
func (d *Directory) SetFailureRecord(name string, count int, last time.Time) {
	now := d.cfg.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	f := d.failures[name]
	if f == nil {
		if count <= 0 {
			return
		}
		f = &failures{}
		if !d.trackLocked(name, f, now) {
			return
		}
	}
	if count <= 0 && f.inflight == 0 {
		delete(d.failures, name)
		return
	}
	f.count, f.last = max(count, 0), last
}
