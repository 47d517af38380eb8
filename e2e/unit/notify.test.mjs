import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DialogWatch, validName } from '../../static/js/notify.mjs';
import { Backoff } from '../../static/js/backoff.mjs';

// FakeRelay stands in for the relay's WebSocket: each socket says hello, then the test pushes messages into
// the newest one or closes it as the relay's idle timeout would.
class FakeSocket {
  static all = [];
  constructor(url, proto) {
    this.url = url;
    this.proto = proto;
    this.closed = false;
    FakeSocket.all.push(this);
    setTimeout(() => this.onmessage?.({ data: '{"t":"hello","v":1}' }), 0);
  }

  push(obj) {
    this.onmessage?.({ data: typeof obj === 'string' ? obj : JSON.stringify(obj) });
  }

  drop(code = 1008) {
    this.onclose?.({ code });
  }

  close() {
    this.closed = true;
  }
}

const tick = (ms = 5) => new Promise((r) => setTimeout(r, ms));

// until polls cond every few milliseconds and fails after 5 s (a loaded machine may run timers late).
async function until(cond, what) {
  for (const end = Date.now() + 5000; !cond();) {
    if (Date.now() > end) assert.fail(`still not ${what} after 5 s`);
    await tick();
  }
}

test('validName accepts usernames and refuses what cannot be one', () => {
  for (const ok of ['bob', 'алиса', 'a.b-c_d', 'x'.repeat(32), '𝔞'.repeat(32)]) assert.equal(validName(ok), true, ok);
  for (const bad of ['', 'ab', 'a b', 'x\n', 'x'.repeat(33), 'x'.repeat(65), 3, null, undefined, {}]) assert.equal(validName(bad), false, String(bad));
});

test('DialogWatch reports dialogs, ignores junk, reopens after the idle close, and stops', async () => {
  const saved = globalThis.WebSocket;
  globalThis.WebSocket = FakeSocket;
  try {
    FakeSocket.all = [];
    let tickets = 0;
    const w = new DialogWatch('ws://127.0.0.1:1/ws', async () => {
      tickets++;
    }, { backoff: new Backoff({ base: 1, max: 4 }) });
    const seen = [];
    const live = [];
    w.addEventListener('dialog', (ev) => seen.push(ev.detail.from));
    w.addEventListener('live', (ev) => live.push(ev.detail));
    w.start();
    await until(() => w.live, 'live');
    assert.equal(FakeSocket.all.length, 1);
    assert.equal(FakeSocket.all[0].proto, 'cleanrelay.v1');
    assert.equal(w.live, true);
    const s = FakeSocket.all[0];
    s.push({ t: 'dialog', from: 'bob', room: 'R', cap: 'C' });
    s.push({ t: 'dialog', from: 'has space', room: 'R', cap: 'C' });
    s.push({ t: 'dialog', room: 'R' });
    s.push('not json');
    s.push({ t: 'future', from: 'eve' });
    assert.deepEqual(seen, ['bob']);
    s.drop(); // the relay's idle timeout
    await until(() => live.length === 3, 'live again after the idle close');
    assert.equal(FakeSocket.all.length, 2, 'no new session after the idle close');
    assert.equal(tickets, 2, 'each session needs its own ticket');
    FakeSocket.all[1].push({ t: 'dialog', from: 'carol', room: 'R2', cap: 'C2' });
    assert.deepEqual(seen, ['bob', 'carol']);
    w.stop();
    assert.equal(FakeSocket.all[1].closed, true);
    FakeSocket.all[1].drop(1000);
    await tick(20);
    assert.equal(FakeSocket.all.length, 2, 'a stopped watch reconnected');
    assert.deepEqual(live, [true, false, true, false]);
  } finally {
    globalThis.WebSocket = saved;
  }
});
