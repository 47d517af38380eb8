// Module conn is one room membership over the relay's WebSocket (docs/protocol.md): create or
// join, send frames, acknowledge, and resume after a dropped connection without losing a frame.
import { SUBPROTOCOL, encodeSend, decodeDeliver, parseControl } from './proto.mjs';
import { Backoff } from './backoff.mjs';

// SENT_KEEP bounds how many sent frames are kept for resending after a drop; the relay's
// per-member buffer (hello.buffer, default 256) is the most it could ask for.
const SENT_KEEP = 512;

// BUSY_WAIT_MS: a resume answered busy (a relay cluster that cannot tell yet whether it holds the place:
// docs/protocol.md §4.3) is asked again on the same socket after a random wait between half of it and all of
// it, until the grace is over. busy is no failure of the connection: the backoff does not grow for it.
export const BUSY_WAIT_MS = 1000;

// JOIN_BUSY_MS: a join answered busy is asked again the same way for this long; then the page tells the user
// to try again (the error's code stays busy). A cluster settles within seconds of a node's death.
export const JOIN_BUSY_MS = 30000;

// coded is an error with a code the page turns into a sentence in the user's language (i18n.errorText).
export const coded = (message, code) => Object.assign(new Error(message), { code });

export class RoomConn extends EventTarget {
  // backoff and joinBusyMs are injectable for tests.
  constructor(url, { backoff = new Backoff(), joinBusyMs = JOIN_BUSY_MS } = {}) {
    super();
    this.joinBusyMs = joinBusyMs;
    this.url = url;
    this.ws = null;
    this.hello = null;
    this.ch = 0;
    this.room = null;
    this.member = 0;
    this.resumeToken = null;
    this.last = 0; // last seq processed
    this.acked = 0;
    this.sent = []; // frames not yet known to be accepted; sent[0] is frame number sentBase+1
    this.sentBase = 0;
    this.sentTotal = 0;
    this.online = false;
    this.ended = false;
    this.nextId = 1;
    this.waiting = new Map();
    this.ackTimer = 0;
    this.retryTimer = 0;
    this.backoff = backoff;
    this.lostAt = 0;
    this.beforeOpen = null;
    // With manualSeen the owner calls seen(seq) once it has processed an entry, so what is acknowledged (and
    // kept for a reload: seat.mjs) is what the user has been shown; done is that mark.
    this.manualSeen = false;
    this.done = 0;
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  async open() {
    // A logged-in session needs a good ticket before every WebSocket (docs/accounts.md §7); beforeOpen may
    // return a function that wants to see the new socket (ticket.mjs).
    const track = this.beforeOpen ? await this.beforeOpen() : null;
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(this.url, SUBPROTOCOL);
      if (typeof track === 'function') track(ws);
      ws.binaryType = 'arraybuffer';
      this.ws = ws;
      let settled = false;
      ws.onmessage = (ev) => {
        if (typeof ev.data === 'string') {
          let m;
          try {
            m = parseControl(ev.data);
          } catch (e) {
            this.emit('error', { message: e.message });
            return;
          }
          if (m.t === 'hello') {
            this.hello = m;
            settled = true;
            resolve(m);
            return;
          }
          this.onControl(m);
        } else {
          this.onFrame(ev.data);
        }
      };
      ws.onclose = (ev) => {
        if (!settled) {
          settled = true;
          reject(coded(`failed to connect to the relay (close code ${ev.code})`, 'connect'));
        }
        if (this.ws === ws) this.onDrop(ev);
      };
    });
  }

  request(msg) {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      this.ws.send(JSON.stringify({ ...msg, id }));
    });
  }

  async create(max = 2) {
    await this.open();
    return this.attach(await this.request({ t: 'create', max }));
  }

  async join(room, cap) {
    await this.open();
    return this.attach(await this.askWhileBusy({ t: 'join', room, cap }, Date.now() + this.joinBusyMs));
  }

  // resumeFrom takes back a membership held before a page reload (token and last seq kept in
  // sessionStorage by the caller).
  async resumeFrom(token, last) {
    await this.open();
    const r = await this.askWhileBusy({ t: 'resume', resume: token, last }, Date.now() + (this.hello?.grace || 120) * 1000);
    this.resumeToken = token;
    this.sentBase = r.in;
    this.sentTotal = r.in;
    return this.attach({ ...r, resume: token, seq: last });
  }

  // askWhileBusy sends msg (a join or a resume) and sends it again on the same socket while the relay answers
  // busy, until the time until (for a resume, the end of the grace).
  async askWhileBusy(msg, until) {
    const ws = this.ws;
    for (;;) {
      try {
        return await this.request(msg);
      } catch (e) {
        if (e.code !== 'busy' || Date.now() >= until) throw e;
        const wait = Math.min(BUSY_WAIT_MS / 2 + (BUSY_WAIT_MS / 2) * Math.random(), until - Date.now());
        await new Promise((resolve) => setTimeout(resolve, wait));
        // The socket may have dropped meanwhile: its close event has scheduled the next attempt.
        if (this.ended || this.ws !== ws || ws.readyState !== 1 /* OPEN */) throw coded('connection to the relay dropped', 'dropped');
      }
    }
  }

  async leave() {
    if (!this.online) return;
    try {
      await this.request({ t: 'leave', ch: this.ch });
    } finally {
      this.close();
    }
  }

  attach(j) {
    this.ch = j.ch;
    this.room = j.room;
    this.member = j.member;
    this.resumeToken = j.resume;
    this.last = j.seq;
    this.acked = j.seq;
    this.done = j.seq;
    this.online = true;
    this.emit('state', { online: true });
    return j;
  }

  onControl(m) {
    if (m.id && this.waiting.has(m.id)) {
      const w = this.waiting.get(m.id);
      this.waiting.delete(m.id);
      if (m.t === 'error') w.reject(Object.assign(new Error(m.msg || m.code), { code: m.code }));
      else w.resolve(m);
      return;
    }
    switch (m.t) {
      case 'presence':
        if (m.ch !== this.ch || m.seq <= this.last) return;
        this.received(m.seq);
        this.emit('presence', m);
        break;
      case 'lost':
        if (m.ch !== this.ch) return;
        this.received(m.to);
        this.emit('lost', m);
        break;
      case 'closed':
        if (m.ch !== this.ch) return;
        this.end();
        this.emit('closed', m);
        break;
      case 'error':
        this.emit('error', { message: m.msg || m.code, code: m.code });
        break;
      case 'dialog':
        this.emit('dialog', m); // another user opened a dialog with this logged-in session's user
        break;
      case 'mail': // another user left this session's user a message in the mailbox
      case 'key': // a user with whom this session's user has a dialog published a new key
        this.emit(m.t, m);
        break;
      default:
        break; // unknown unprompted messages are ignored by design (protocol.md §4)
    }
  }

  onFrame(data) {
    let f;
    try {
      f = decodeDeliver(data);
    } catch (e) {
      this.emit('error', { message: e.message });
      return;
    }
    if (f.ch !== this.ch || f.seq <= this.last) return; // a replay after resume: already processed
    this.received(f.seq);
    this.emit('frame', f);
  }

  received(seq) {
    this.last = Math.max(this.last, seq);
    if (!this.manualSeen) this.seen(seq);
  }

  // seen follows protocol.md §4.2 (ack): acknowledge after ackEvery entries, or ackDelay ms after the first
  // entry not yet acknowledged (one timer, not restarted by later entries).
  seen(seq) {
    this.done = Math.max(this.done, seq);
    const every = this.hello?.ackEvery || 64;
    if (this.done - this.acked >= every) this.ack();
    else if (!this.ackTimer) this.ackTimer = setTimeout(() => this.ack(), this.hello?.ackDelay || 100);
  }

  ack() {
    clearTimeout(this.ackTimer);
    this.ackTimer = 0;
    if (!this.online || this.done <= this.acked) return;
    this.acked = this.done;
    this.ws.send(JSON.stringify({ t: 'ack', ch: this.ch, seq: this.done }));
  }

  // send queues payload for the room; it goes out now if connected, or after the next resume.
  send(payload) {
    if (this.ended) throw coded('the room has ended', 'ended');
    // A frame over the relay's limit would close the whole connection (1009): refuse just this one.
    const max = this.hello?.maxFrame;
    if (max && payload.length > max) throw new Error(`failed to send: a ${payload.length}-byte frame is over this relay's ${max}-byte limit`);
    this.sent.push(payload);
    this.sentTotal++;
    if (this.sent.length > SENT_KEEP) {
      this.sent.shift();
      this.sentBase++;
    }
    if (this.online) this.ws.send(encodeSend(this.ch, payload));
  }

  onDrop(ev) {
    const wasOnline = this.online;
    this.online = false;
    for (const w of this.waiting.values()) w.reject(coded('connection to the relay dropped', 'dropped'));
    this.waiting.clear();
    if (this.ended || !this.resumeToken) return;
    if (wasOnline) {
      this.lostAt = Date.now();
      this.emit('state', { online: false, code: ev.code });
    }
    this.retryLater();
  }

  // retryLater schedules the next reconnection attempt, or ends the membership once the relay's grace is over
  // (the relay has given the place away by then).
  retryLater() {
    const grace = (this.hello?.grace || 120) * 1000;
    if (Date.now() - this.lostAt > grace) {
      this.end();
      this.emit('closed', { reason: 'timeout' });
      return;
    }
    const wait = this.backoff.next();
    this.retryTimer = setTimeout(() => this.reconnect(), wait);
    this.emit('retry', { at: Date.now() + wait, attempt: this.backoff.attempt }); // connstate.mjs tells the user
  }

  async reconnect() {
    if (this.ended) return;
    const before = this.ws;
    try {
      await this.open();
      const grace = (this.hello?.grace || 120) * 1000;
      const r = await this.askWhileBusy({ t: 'resume', resume: this.resumeToken, last: this.last }, this.lostAt + grace);
      this.ch = r.ch;
      this.online = true;
      // Reset only after the relay took the membership back: a hello followed by a refused resume must not
      // make the next attempt fast again.
      this.backoff.reset();
      // Frames beyond the first `in` never reached the relay: send them again, in order.
      if (r.in < this.sentBase) this.emit('error', { message: `${this.sentBase - r.in} sent frames could not be resent` });
      for (let n = Math.max(r.in, this.sentBase); n < this.sentTotal; n++) {
        this.ws.send(encodeSend(this.ch, this.sent[n - this.sentBase]));
      }
      // Keep what was resent until a later resume says the relay has it.
      if (r.in > this.sentBase) {
        this.sent = this.sent.slice(Math.min(r.in - this.sentBase, this.sent.length));
        this.sentBase = Math.min(r.in, this.sentTotal);
      }
      this.emit('state', { online: true, resumed: true, members: r.members });
    } catch (e) {
      // The relay no longer knows the place (bad_token), or no longer knows the login that opens the socket
      // (unauthorized: it restarted, or the login ended): waiting out the grace cannot bring either back.
      if (e.code === 'bad_token' || e.code === 'unauthorized') {
        this.end();
        this.emit('closed', { reason: 'gone' });
        return;
      }
      if (this.ws === before) {
        // No socket was made (the ticket for a logged-in session failed, e.g. while tor restarts): no close
        // event will come to schedule the next attempt, so schedule it here.
        this.retryLater();
        return;
      }
      try {
        this.ws.close(); // its close event schedules the next attempt
      } catch {
        /* already closed */
      }
    }
  }

  async burn() {
    if (!this.online) throw coded('not connected to the relay', 'offline');
    this.ws.send(JSON.stringify({ t: 'burn', id: this.nextId++, ch: this.ch }));
  }

  end() {
    this.ended = true;
    this.online = false;
    clearTimeout(this.ackTimer);
    clearTimeout(this.retryTimer);
    this.sent = [];
  }

  close() {
    this.end();
    try {
      this.ws?.close(1000);
    } catch {
      /* already closed */
    }
  }
}
