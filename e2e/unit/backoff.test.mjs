import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Backoff, BACKOFF_BASE_MS, BACKOFF_MAX_MS } from '../../static/js/backoff.mjs';
import { RoomConn } from '../../static/js/conn.mjs';
import { ConnState, OFFLINE_AFTER } from '../../static/js/connstate.mjs';

test('the schedule doubles from 0.5 s to 30 s, each wait in the upper half of its step', () => {
  assert.equal(BACKOFF_BASE_MS, 500);
  assert.equal(BACKOFF_MAX_MS, 30000);
  const ceilings = [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000];
  const low = new Backoff({ random: () => 0 });
  assert.deepEqual(ceilings.map(() => low.next()), ceilings.map((c) => c / 2));
  const high = new Backoff({ random: () => 0.999999 });
  assert.deepEqual(ceilings.map(() => high.next()), ceilings);
  for (let i = 0; i < 1000; i++) high.next(); // no overflow however long it runs
  assert.equal(high.ceiling(), 30000);
});

test('jitter spreads clients that dropped together; reset starts over', () => {
  const waits = Array.from({ length: 200 }, () => new Backoff().next());
  assert.ok(waits.every((w) => w >= 250 && w <= 500), 'first wait outside [250, 500] ms');
  assert.ok(new Set(waits).size > 50, `only ${new Set(waits).size} distinct first waits out of 200`);
  const b = new Backoff({ random: () => 0 });
  b.next();
  b.next();
  b.next();
  assert.equal(b.next(), 2000, 'the fourth wait of random 0 is half of 4 s');
  b.reset();
  assert.equal(b.next(), 250);
  assert.throws(() => new Backoff({ base: 0 }), /bad base/);
  assert.throws(() => new Backoff({ base: 10, max: 5 }), /bad base/);
});

// FakeSocket is a WebSocket for RoomConn that the test controls: `accept` decides, per attempt, whether the
// relay answers (hello, then resumed) or the connection fails at once.
class FakeSocket {
  static attempts = [];
  static accept = () => false;
  constructor(url) {
    this.url = url;
    this.sent = [];
    FakeSocket.attempts.push(Date.now());
    setTimeout(() => {
      if (!FakeSocket.accept()) {
        this.onclose?.({ code: 1006 });
        return;
      }
      this.onmessage?.({ data: JSON.stringify({ t: 'hello', v: 1, maxFrame: 65536, grace: 120, ackEvery: 32 }) });
    }, 0);
  }

  send(text) {
    this.sent.push(text);
    const m = JSON.parse(text);
    if (m.t === 'resume') {
      setTimeout(() => this.onmessage?.({ data: JSON.stringify({ t: 'resumed', id: m.id, ch: 1, room: 'R', member: 2, seq: 5, in: 0, max: 2, members: [1, 2] }) }), 0);
    }
  }

  close() {}
}

// RecordingBackoff is a fast Backoff (1 ms doubling to 8 ms) that records the ceiling of every wait it gave.
class RecordingBackoff extends Backoff {
  constructor() {
    super({ base: 1, max: 8, random: () => 0.999999 });
    this.given = [];
  }

  next() {
    this.given.push(this.ceiling());
    return super.next();
  }
}

// until polls cond every millisecond; it fails (and stops polling) after 5 s, so a broken reconnect loop fails
// the test instead of keeping node alive.
function until(cond, what) {
  const t0 = Date.now();
  return new Promise((resolve, reject) => {
    const poll = setInterval(() => {
      if (cond()) {
        clearInterval(poll);
        resolve();
      } else if (Date.now() - t0 > 5000) {
        clearInterval(poll);
        reject(new Error(`gave up waiting for ${what}: reconnection stopped`));
      }
    }, 1);
  });
}

test('RoomConn reconnects on the backoff schedule, also when no socket could be made, and resets on resume', { timeout: 10000 }, async () => {
  const saved = globalThis.WebSocket;
  globalThis.WebSocket = FakeSocket;
  try {
    FakeSocket.attempts = [];
    FakeSocket.accept = () => false;
    const backoff = new RecordingBackoff();
    const c = new RoomConn('ws://127.0.0.1:1/ws', { backoff });
    // A joined membership whose connection just dropped.
    Object.assign(c, { online: true, resumeToken: 'T', ch: 1, last: 3, hello: { grace: 120 } });
    let tickets = 0;
    c.beforeOpen = async () => {
      tickets++;
      if (tickets % 2 === 0) throw new Error('ticket request failed'); // every other attempt: no socket at all
    };
    let resumed = false;
    c.addEventListener('state', (ev) => {
      if (ev.detail.resumed) resumed = true;
    });
    c.onDrop({ code: 1006 });
    await until(() => backoff.given.length >= 7, 'seven attempts');
    FakeSocket.accept = () => true;
    await until(() => resumed, 'the resume');
    assert.deepEqual(backoff.given.slice(0, 7), [1, 2, 4, 8, 8, 8, 8], 'waits did not follow the schedule');
    assert.ok(tickets >= 7, `only ${tickets} attempts`);
    assert.ok(FakeSocket.attempts.length < tickets, 'the failed ticket requests made sockets');
    assert.equal(backoff.attempt, 0, 'a successful resume did not reset the backoff');
    assert.equal(c.online, true);
    c.close();
  } finally {
    globalThis.WebSocket = saved;
  }
});

test('the page\'s connection state follows a RoomConn: reconnecting, offline after failed attempts, connected', { timeout: 10000 }, async () => {
  const saved = globalThis.WebSocket;
  globalThis.WebSocket = FakeSocket;
  try {
    FakeSocket.accept = () => false;
    const backoff = new RecordingBackoff();
    const c = new RoomConn('ws://127.0.0.1:1/ws', { backoff });
    Object.assign(c, { online: true, resumeToken: 'T', ch: 1, last: 3, hello: { grace: 120 } });
    const s = new ConnState();
    s.track(c);
    const seen = [];
    s.addEventListener('change', (ev) => {
      if (seen.at(-1) !== ev.detail.phase) seen.push(ev.detail.phase);
    });
    c.onDrop({ code: 1006 });
    await until(() => backoff.given.length > OFFLINE_AFTER + 1, 'enough failed attempts');
    assert.deepEqual(seen, ['reconnecting', 'offline']);
    assert.ok(s.get().failed >= OFFLINE_AFTER);
    assert.ok(s.get().nextAt > 0, 'offline without the time of the next attempt');
    FakeSocket.accept = () => true;
    await until(() => s.get().phase === 'connected', 'connected');
    assert.deepEqual(seen, ['reconnecting', 'offline', 'connected']);
    c.close();
  } finally {
    globalThis.WebSocket = saved;
  }
});

test('with manualSeen a RoomConn acknowledges only what its owner has processed', async () => {
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const sent = [];
  const c = new RoomConn('ws://127.0.0.1:1/ws');
  Object.assign(c, { online: true, ch: 1, last: 5, acked: 5, done: 5, manualSeen: true, hello: { ackEvery: 2, ackDelay: 1 },
    ws: { send: (x) => sent.push(JSON.parse(x)) } });
  for (const seq of [6, 7, 8]) c.received(seq);
  await sleep(20);
  assert.deepEqual(sent, [], 'acknowledged entries nobody processed');
  assert.equal(c.last, 8, 'received entries are still known, so a resume in the page does not get them twice');
  c.seen(6);
  await sleep(20);
  assert.deepEqual(sent, [{ t: 'ack', ch: 1, seq: 6 }]);
  c.seen(8);
  assert.deepEqual(sent.at(-1), { t: 'ack', ch: 1, seq: 8 }, 'ackEvery processed entries are acknowledged at once');
  c.close();
});
