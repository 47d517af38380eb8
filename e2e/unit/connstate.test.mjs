// The page's connection state: what the banner and the composer say in each phase, and the seconds to the next
// attempt; the small modules beside it: disappearing-message countdowns (expiry.mjs), the kept seat (seat.mjs),
// the conversation's timer (convtimer.mjs) and asking again after a reload (resend.mjs).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConnState, view } from '../../static/js/connstate.mjs';
import { left, clock, expire, tick, pending } from '../../static/js/expiry.mjs';
import { loadSeat, saveSeat, updateSeat, dropSeat } from '../../static/js/seat.mjs';
import { ConvTimer, ttlOf, TTL_MAX } from '../../static/js/convtimer.mjs';
import { Resend, SENT_LOG, RESEND_MAX } from '../../static/js/resend.mjs';
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

test('two members who set the timer at once end up with the same setting, whatever the arrival order', () => {
  const a = new ConvTimer();
  const b = new ConvTimer();
  const fromA = a.message(60, 'x', 1000);
  const fromB = b.message(300, 'y', 1000); // the same millisecond: the higher member id wins
  assert.equal(a.apply(1, fromA), true);
  assert.equal(b.apply(2, fromB), true);
  a.apply(2, fromB);
  b.apply(1, fromA);
  assert.deepEqual(a.saved(), b.saved());
  assert.equal(a.ttl, 300);
  assert.equal(a.apply(2, fromB), false, 'the same message again (sent again after a reload) changes nothing');
  const later = a.message(0, 'z', 2000);
  assert.equal(b.apply(1, later), true);
  assert.equal(b.ttl, 0);
  assert.equal(new ConvTimer(b.saved()).apply(2, fromB), false, 'a seat keeps the setting across a reload');
  assert.deepEqual([ttlOf('60'), ttlOf(-5), ttlOf(1e12), ttlOf('x'), ttlOf(9.7)], [60, 0, TTL_MAX, 0, 9]);
});

test('a reloaded member asks each sender once for what it could not read; the sender answers from its bounded log', () => {
  const sender = new Resend();
  for (let n = 0; n < SENT_LOG + 5; n++) sender.keep({ epoch: 1, n }, { k: 'msg', id: `m${n}` }, undefined);
  sender.keep({ epoch: 1, n: 999 }, { k: 'chunk', id: 'f', i: 0 }, new Uint8Array(1)); // file chunks are not kept
  sender.keep(null, { k: 'msg', id: 'nowhere' });
  assert.equal(sender.sent.size, SENT_LOG);
  const reader = new Resend();
  reader.missed(1, 1, 3); // gone from the sender's log
  reader.missed(1, 1, SENT_LOG + 4);
  reader.missed(3, 1, 0);
  let k = 0;
  const reqs = reader.requests(() => `r${k++}`);
  assert.deepEqual(reqs.map((r) => [r.member, r.header.to, r.header.want]), [[1, 1, [[1, 3], [1, SENT_LOG + 4]]], [3, 3, [[1, 0]]]]);
  assert.deepEqual(reader.requests(() => 'x'), [], 'asked once');
  const a = sender.answer(1, reqs[0].header);
  assert.deepEqual([a.asked, a.again.map((e) => e.header.id)], [2, [`m${SENT_LOG + 4}`]]);
  assert.equal(sender.answer(2, reqs[0].header), null, 'a request to another member');
  assert.equal(sender.answer(1, { k: 'resend', to: 1, want: 'all' }), null);
  assert.deepEqual(sender.answer(1, { k: 'resend', to: 1, want: [[1], 'x', [1, 9999]] }).again, []);
  for (let i = 0; i < RESEND_MAX + 10; i++) reader.missed(1, 2, i);
  assert.equal(reader.requests(() => 'y')[0].header.want.length, RESEND_MAX);
});
