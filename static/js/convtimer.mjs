// Module convtimer holds a conversation's disappearing-message timer: the setting every member shares, set by a
// timer message of any member (docs/e2e.md §13), and the clamping of a peer's timer values.

// TTL_MAX is the longest timer a peer may set (7 days).
export const TTL_MAX = 7 * 24 * 3600;

// ttlOf reads a timer from a peer's message: whole seconds from 0 (off) to TTL_MAX.
export function ttlOf(v) {
  const n = Math.floor(Number(v));
  return n > 0 ? Math.min(n, TTL_MAX) : 0;
}

export class ConvTimer {
  // saved is {ttl, ts, from} of a timer taken before (a seat after a reload), optional.
  constructor(saved = null) {
    this.ttl = ttlOf(saved?.ttl);
    this.ts = Number(saved?.ts) || 0;
    this.from = Number(saved?.from) || 0;
  }

  // message is the envelope header that sets the timer to ttl seconds.
  message(ttl, id, now = Date.now()) {
    return { k: 'timer', id, ttl: ttlOf(ttl), ts: now };
  }

  // apply takes timer message h from member `from` (the relay's stamp, or oneself) and says whether it changed
  // the setting. Of two set at once, every member keeps the later ts, then the higher member id, whatever
  // order they arrive in; the same message again changes nothing.
  apply(from, h) {
    const ts = Number(h.ts) || 0;
    if (ts < this.ts || (ts === this.ts && from <= this.from)) return false;
    Object.assign(this, { ttl: ttlOf(h.ttl), ts, from });
    return true;
  }

  saved() {
    return { ttl: this.ttl, ts: this.ts, from: this.from };
  }
}
