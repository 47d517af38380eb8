// Module outbox keeps each message the user sent with its state — pending (not yet accepted by the relay),
// waiting (for the contact: none of its one-time prekeys could be had, docs/e2e.md §9), sent (the relay holds or forwarded it), delivered (the peer's client decrypted it and said so in an
// end-to-end encrypted receipt, docs/e2e.md §Receipts), failed (with Retry) — and retries what is pending.

// PENDING_FOR is how long a message may wait for the relay before it is marked failed; RETRY_EVERY is how
// often a pending one is tried again meanwhile (a reconnect tries at once).
export const PENDING_FOR = 15000;
export const RETRY_EVERY = 3000;
// WAIT_RETRY is how often a message waiting for its contact (no one-time prekey of the contact to be had,
// docs/e2e.md §9) is tried again; the contact coming online tries at once.
export const WAIT_RETRY = 30000;

// Outbox is the messages of one conversation. attempt(entry) sends an entry once: it resolves to 'sent', or
// to 'queued' when the frame waits in the room's connection for the next resume (flush marks those sent),
// and rejects with an error whose code 'network' or 'offline' means "the relay cannot be reached now".
export class Outbox extends EventTarget {
  constructor() {
    super();
    this.items = new Map(); // id -> entry {id, kind, text, name, ttl, ts, state, why, need, got}
    this.attempt = null;
    this.view = null; // the page's function that shows an entry's state (one at a time: the screen showing it)
    this.timer = 0;
  }

  emit(entry) {
    this.view?.(entry);
    this.dispatchEvent(new CustomEvent('state', { detail: entry }));
  }

  set(e, state, why = null) {
    if (e.state === 'delivered') return; // a receipt is the last word
    e.state = state;
    e.why = why;
    this.emit(e);
  }

  // send adds entry (with a fresh id) and tries it; need is the set of peers whose receipts make it delivered.
  send(entry, need) {
    const e = { ...entry, state: 'pending', why: null, need: new Set(need), got: new Set(), since: Date.now() };
    this.items.set(e.id, e);
    this.emit(e);
    return this.run(e);
  }

  async run(e) {
    if (!this.attempt) {
      this.set(e, 'failed', Object.assign(new Error('the conversation has ended'), { code: 'ended' }));
      return;
    }
    let r;
    try {
      r = await this.attempt(e);
    } catch (err) {
      if (err.code === 'waiting_contact') {
        this.set(e, 'waiting', err);
        this.later(WAIT_RETRY);
        return;
      }
      if ((err.code === 'network' || err.code === 'offline' || err.code === 'dropped') && Date.now() - e.since < PENDING_FOR) {
        this.set(e, 'pending');
        this.later();
        return;
      }
      this.set(e, 'failed', err);
      return;
    }
    this.set(e, r === 'queued' ? 'queued' : 'sent');
  }

  later(ms = RETRY_EVERY) {
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = 0;
      this.wake();
    }, ms);
  }

  // wake tries every pending message again (the connection came back) and fails those pending too long;
  // messages waiting for their contact are tried again too, without a time limit.
  wake() {
    for (const e of this.items.values()) {
      if (e.state === 'waiting') e.since = Date.now();
      if (e.state === 'pending' || e.state === 'waiting') this.run(e);
    }
  }

  // flush marks the frames that waited in the connection as sent: a resume handed them to the relay.
  flush() {
    for (const e of this.items.values()) if (e.state === 'queued') this.set(e, 'sent');
  }

  // fail marks everything not yet accepted as failed (the room ended).
  fail(why) {
    for (const e of this.items.values()) if (e.state === 'pending' || e.state === 'queued' || e.state === 'waiting') this.set(e, 'failed', why);
  }

  retry(id) {
    const e = this.items.get(id);
    if (!e || e.state !== 'failed') return null;
    e.since = Date.now();
    this.set(e, 'pending');
    return this.run(e);
  }

  // receipt records that peer decrypted the messages with ids; a message is delivered once every peer it
  // was sent to has said so.
  receipt(peer, ids) {
    for (const id of ids) {
      const e = this.items.get(id);
      if (!e || e.state === 'delivered') continue;
      e.got.add(peer);
      this.check(e);
    }
  }

  // gone forgets a member who left the room: its receipt is no longer waited for (a message that others
  // confirmed is delivered; one nobody confirmed stays sent).
  gone(peer) {
    for (const e of this.items.values()) {
      if (e.state !== 'delivered' && e.need.delete(peer)) this.check(e);
    }
  }

  check(e) {
    if (e.got.size > 0 && [...e.need].every((p) => e.got.has(p))) {
      e.state = 'delivered';
      e.why = null;
      this.emit(e);
    }
  }

  // undeliverable marks the messages whose mailbox items the relay wiped unread (the peer's key changed) as
  // failed; boxIds are the relay's item ids.
  undeliverable(boxIds, why) {
    const gone = new Set(boxIds);
    for (const e of this.items.values()) {
      if (e.state === 'sent' && e.boxIds?.some((b) => gone.has(b))) this.set(e, 'failed', why);
    }
  }

  stop() {
    clearTimeout(this.timer);
    this.timer = 0;
    this.attempt = null;
  }
}

// dialogBoxes keeps the outbox of each dialog (a user and its peer) while the page lives: a dialog left and
// opened again — a relay restart ends its room and the login with it — still shows what was sent, and what
// failed keeps its Retry. Only the same user sees it again; closing the tab forgets it.
const dialogBoxes = new Map();

export function dialogOutbox(user, peer) {
  const key = `${user}\n${peer}`;
  if (!dialogBoxes.has(key)) dialogBoxes.set(key, new Outbox());
  return dialogBoxes.get(key);
}
