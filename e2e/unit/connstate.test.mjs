// The page's connection state: what the banner and the composer say in each phase, and the seconds to the next
// attempt; the small modules beside it: disappearing-message countdowns (expiry.mjs) and the kept seat (seat.mjs).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConnState, view } from '../../static/js/connstate.mjs';
import { left, clock, expire, tick, pending } from '../../static/js/expiry.mjs';
import { loadSeat, saveSeat, updateSeat, dropSeat } from '../../static/js/seat.mjs';
import { hasKey } from '../../static/js/i18n.mjs';

test('each phase says what happens to what the user types, with whole seconds to the next attempt', () => {
  const now = 1_000_000;
  assert.deepEqual(view({ phase: 'connected', nextAt: 0 }, now), { key: 'conn_connected', vars: {}, composer: null, queued: false });
  assert.deepEqual(view({ phase: 'reconnecting', nextAt: now + 2100 }, now), { key: 'conn_reconnecting_in', vars: { n: 3 }, composer: 'composer_reconnecting', queued: true });
  assert.deepEqual(view({ phase: 'reconnecting', nextAt: now - 5 }, now).key, 'conn_reconnecting', 'an attempt under way has no countdown');
  assert.deepEqual(view({ phase: 'offline', nextAt: now + 16000 }, now), { key: 'conn_offline_in', vars: { n: 16 }, composer: 'composer_offline', queued: true });
  assert.equal(view({ phase: 'offline', nextAt: 0 }, now).key, 'conn_offline');
  assert.equal(view({ phase: 'connecting', nextAt: 0 }, now).composer, 'composer_connecting');
  for (const phase of ['connected', 'connecting', 'reconnecting', 'offline']) {
    for (const at of [0, now + 5000]) {
      const v = view({ phase, nextAt: at }, now);
      assert.ok(hasKey(v.key), `no sentence for ${v.key}`);
      if (v.composer) assert.ok(hasKey(v.composer), `no sentence for ${v.composer}`);
    }
  }
  assert.throws(() => new ConnState().set('flying'), /unknown connection phase/);
});

// fakeEl is the little of an element expiry.mjs uses.
function fakeEl() {
  const countdown = { textContent: '' };
  return { isConnected: true, removed: false, countdown, querySelectorAll: () => [countdown], remove() {
    this.removed = true;
    this.isConnected = false;
  } };
}

test('a disappearing message counts down and goes when its time is up, and only then', () => {
  assert.equal(left(10_000, 0), 10);
  assert.equal(left(10_000, 9_001), 1);
  assert.equal(left(10_000, 10_001), 0);
  assert.deepEqual([9, 59, 60, 299, 3600, 3661].map(clock), ['0:09', '0:59', '1:00', '4:59', '1:00:00', '1:01:01']);
  const t0 = Date.now();
  const a = fakeEl();
  const b = fakeEl();
  let gone = 0;
  expire(a, 10, { now: t0, onGone: () => gone++ });
  expire(b, 300, { now: t0 });
  assert.equal(a.countdown.textContent, '0:10');
  assert.equal(tick(t0 + 4_500), 0);
  assert.equal(a.countdown.textContent, '0:06');
  assert.equal(b.countdown.textContent, '4:56');
  assert.equal(tick(t0 + 10_000), 1);
  assert.deepEqual([a.removed, b.removed, gone], [true, false, 1]);
  b.isConnected = false; // its screen went away: forgotten at once
  assert.equal(tick(t0 + 11_000), 1);
  assert.equal(pending(), 0);
});

test('the seat is kept for the tab, read back only when whole, and dropped', () => {
  const m = new Map();
  globalThis.sessionStorage = { getItem: (k) => m.get(k) ?? null, setItem: (k, v) => m.set(k, String(v)), removeItem: (k) => m.delete(k) };
  try {
    assert.equal(loadSeat(), null);
    const seat = { room: 'R', cap: 'C', secret: 'S', resume: 'T', seed: 'E', member: 2, last: 7, max: 2, type: 'rsa', creator: false, hadEpoch: false };
    saveSeat(seat);
    updateSeat({ last: 9, hadEpoch: true });
    assert.deepEqual(loadSeat(), { ...seat, last: 9, hadEpoch: true });
    m.set('cleanrelay.seat', JSON.stringify({ ...seat, resume: 5 }));
    assert.equal(loadSeat(), null, 'a seat with a field of the wrong type');
    m.set('cleanrelay.seat', '{not json');
    assert.equal(loadSeat(), null);
    saveSeat(seat);
    dropSeat();
    assert.equal(loadSeat(), null);
    updateSeat({ last: 1 });
    assert.equal(loadSeat(), null, 'an update does not make a seat');
  } finally {
    delete globalThis.sessionStorage;
  }
});
