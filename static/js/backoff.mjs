// Module backoff schedules reconnection attempts: exponential backoff with jitter.
//
// Without it, every client of a relay whose tor restarts retries at the same fast pace, together, for as long
// as the restart takes. Attempt k (from 0) waits a random time in [d/2, d] with d = min(max, base · 2^k):
// the doubling spaces the attempts out, and the random half spreads clients that dropped at the same moment.

// BACKOFF_BASE_MS and BACKOFF_MAX_MS are the defaults: 0.5 s doubling to 30 s (the relay's grace, 120 s by
// default, leaves room for several attempts at the longest wait).
export const BACKOFF_BASE_MS = 500;
export const BACKOFF_MAX_MS = 30000;

export class Backoff {
  // random is injectable for tests; it must return a number in [0, 1).
  constructor({ base = BACKOFF_BASE_MS, max = BACKOFF_MAX_MS, random = Math.random } = {}) {
    if (!(base > 0 && max >= base)) throw new RangeError(`failed to make backoff: bad base ${base} or max ${max}`);
    this.base = base;
    this.max = max;
    this.random = random;
    this.attempt = 0;
  }

  // ceiling is the longest wait of the next attempt.
  ceiling() {
    return Math.min(this.max, this.base * 2 ** Math.min(this.attempt, 30));
  }

  // next returns how many milliseconds to wait before the next attempt, and counts the attempt.
  next() {
    const d = this.ceiling();
    this.attempt++;
    return Math.round(d / 2 + (d / 2) * this.random());
  }

  // reset starts over after a connection that worked.
  reset() {
    this.attempt = 0;
  }
}
