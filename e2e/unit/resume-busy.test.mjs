import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Backoff } from '../../static/js/backoff.mjs';
import { RoomConn, BUSY_WAIT_MS } from '../../static/js/conn.mjs';

// BusySocket is a relay that answers every connection with hello and each resume or join as `answer` says:
// 'busy', an error code, or anything else for resumed/joined (docs/protocol.md §4.2, §4.3).
class BusySocket {
  static sockets = [];
  static resumes = 0;
  static answer = () => 'resumed';
  static grace = 120;
  constructor(url) {
    this.url = url;
    this.readyState = 1; // OPEN
    BusySocket.sockets.push(this);
    setTimeout(() => this.onmessage?.({ data: JSON.stringify({ t: 'hello', v: 1, maxFrame: 65536, grace: BusySocket.grace, ackEvery: 32 }) }), 0);
  }

  send(text) {
    const m = JSON.parse(text);
    if (m.t !== 'resume' && m.t !== 'join') return;
    BusySocket.resumes++;
    const a = BusySocket.answer();
    const reply = a !== 'resumed'
      ? { t: 'error', id: m.id, code: a, msg: a }
      : m.t === 'join'
        ? { t: 'joined', id: m.id, ch: 1, room: m.room, member: 2, seq: 0, resume: 'T', max: 2, members: [1, 2] }
        : { t: 'resumed', id: m.id, ch: 1, room: 'R', member: 2, seq: 5, in: 0, max: 2, members: [1, 2] };
    setTimeout(() => this.onmessage?.({ data: JSON.stringify(reply) }), 0);
  }

  close() {
    if (this.readyState === 3) return;
    this.readyState = 3;
    setTimeout(() => this.onclose?.({ code: 1000 }), 0);
  }
}

// until polls cond every 5 ms and fails after limit ms.
function until(cond, what, limit = 8000) {
  const t0 = Date.now();
  return new Promise((resolve, reject) => {
    const poll = setInterval(() => {
      if (cond()) {
        clearInterval(poll);
        resolve();
      } else if (Date.now() - t0 > limit) {
        clearInterval(poll);
        reject(new Error(`gave up waiting for ${what}`));
      }
    }, 5);
  });
}

// withRelay runs fn with BusySocket as the WebSocket, fresh counters and the given answers.
async function withRelay(answer, grace, fn) {
  const saved = globalThis.WebSocket;
  globalThis.WebSocket = BusySocket;
  Object.assign(BusySocket, { sockets: [], resumes: 0, answer, grace });
  try {
    await fn();
  } finally {
    globalThis.WebSocket = saved;
  }
}

// dropped is a RoomConn whose joined membership's connection just dropped (its reconnection scheduled).
function dropped() {
  const c = new RoomConn('ws://127.0.0.1:1/ws', { backoff: new Backoff({ base: 1, max: 8 }) });
  Object.assign(c, { online: true, resumeToken: 'T', ch: 1, last: 3, hello: { grace: 120 } });
  c.onDrop({ code: 1006 });
  return c;
}

test('a resume answered busy is asked again on the same socket, about a second apart, until it is resumed', { timeout: 15000 }, async () => {
  await withRelay(() => (BusySocket.resumes <= 2 ? 'busy' : 'resumed'), 120, async () => {
    const c = dropped();
    let resumed = false;
    c.addEventListener('state', (ev) => {
      if (ev.detail.resumed) resumed = true;
    });
    const t0 = Date.now();
    await until(() => resumed, 'the resume');
    const took = Date.now() - t0;
    assert.equal(BusySocket.resumes, 3, 'two busy answers, then resumed');
    assert.equal(BusySocket.sockets.length, 1, 'busy made a new socket: it is no failure of the connection');
    assert.ok(took >= BUSY_WAIT_MS, `asked again after ${took} ms for two busy answers: not waiting half a second each`);
    assert.ok(took < 4 * BUSY_WAIT_MS, `took ${took} ms for two busy answers`);
    assert.equal(c.online, true);
    c.close();
  });
});

test('bad_token is final: the membership ends at once, with no other attempt', { timeout: 15000 }, async () => {
  await withRelay(() => 'bad_token', 120, async () => {
    const c = dropped();
    let closed = null;
    c.addEventListener('closed', (ev) => {
      closed = ev.detail.reason;
    });
    await until(() => closed !== null, 'the end of the membership');
    assert.equal(closed, 'gone');
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(BusySocket.resumes, 1);
    assert.equal(BusySocket.sockets.length, 1);
  });
});

test('busy past the grace ends the membership: the relay has given the place away by then', { timeout: 15000 }, async () => {
  await withRelay(() => 'busy', 2, async () => {
    const c = dropped();
    let closed = null;
    c.addEventListener('closed', (ev) => {
      closed = ev.detail.reason;
    });
    await until(() => closed !== null, 'the end of the membership');
    assert.equal(closed, 'timeout');
    assert.ok(BusySocket.resumes >= 2, `asked ${BusySocket.resumes} times within a 2 s grace`);
    assert.ok(BusySocket.resumes <= 6, `asked ${BusySocket.resumes} times within a 2 s grace: not waiting between`);
    assert.equal(c.ended, true);
  });
});

test('a resume after a reload (resumeFrom) asks again while busy', { timeout: 15000 }, async () => {
  await withRelay(() => (BusySocket.resumes <= 1 ? 'busy' : 'resumed'), 120, async () => {
    const c = new RoomConn('ws://127.0.0.1:1/ws');
    const j = await c.resumeFrom('T', 3);
    assert.equal(j.member, 2);
    assert.equal(BusySocket.resumes, 2);
    assert.equal(BusySocket.sockets.length, 1);
    c.close();
  });
});

test('a join answered busy is asked again on the same socket until the room is joined', { timeout: 15000 }, async () => {
  await withRelay(() => (BusySocket.resumes <= 2 ? 'busy' : 'resumed'), 120, async () => {
    const c = new RoomConn('ws://127.0.0.1:1/ws');
    const t0 = Date.now();
    const j = await c.join('R', 'cap');
    const took = Date.now() - t0;
    assert.equal(j.member, 2);
    assert.equal(c.online, true);
    assert.equal(BusySocket.resumes, 3, 'two busy answers, then joined');
    assert.equal(BusySocket.sockets.length, 1);
    assert.ok(took >= BUSY_WAIT_MS, `asked again after ${took} ms for two busy answers: not waiting half a second each`);
    c.close();
  });
});

test('a join answered denied fails at once; one busy past its limit fails with busy', { timeout: 15000 }, async () => {
  await withRelay(() => 'denied', 120, async () => {
    const c = new RoomConn('ws://127.0.0.1:1/ws');
    await assert.rejects(c.join('R', 'cap'), (e) => e.code === 'denied');
    assert.equal(BusySocket.resumes, 1);
    c.close();
  });
  await withRelay(() => 'busy', 120, async () => {
    const c = new RoomConn('ws://127.0.0.1:1/ws', { joinBusyMs: 1500 });
    await assert.rejects(c.join('R', 'cap'), (e) => e.code === 'busy');
    assert.ok(BusySocket.resumes >= 2 && BusySocket.resumes <= 5, `asked ${BusySocket.resumes} times within 1.5 s`);
    assert.equal(c.online, false);
    c.close();
  });
});
