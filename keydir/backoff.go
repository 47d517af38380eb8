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
