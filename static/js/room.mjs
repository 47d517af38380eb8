// Module room runs a room: it joins the relay and turns chat messages and files into encrypted frames
// and back, with protocol v2 (docs/e2e.md) in anonymous rooms and dialogs; a dialog's mailbox still
// carries OpenPGP messages (v1, docs/e2e.md §15).
import { RoomConn, coded } from './conn.mjs';
import { KIND_KEY, KIND_PGP, KIND_MAIL, KINDS_V2, encodeEnvelope, decodeEnvelope, decodePayload, b64u } from './proto.mjs';
import { MAX_DATA } from './pad.mjs';
import { validName } from './notify.mjs';
import { t } from './i18n.mjs';
import { ConvTimer, ttlOf } from './convtimer.mjs';
import { Resend } from './resend.mjs';
import { Outbox } from './outbox.mjs';
import * as mailbox from './mailbox.mjs';
import * as prekeys from './prekeys.mjs';

// PEER is the worker's member id of a dialog's other user for protocol v1 (the mailbox): its key comes from
// the directory. It is also who a dialog's receipts count for, whatever seat the peer has in the room.
export const PEER = 0;
// RECEIPT_DELAY gathers the receipts of messages read together into one (docs/e2e.md §Receipts).
const RECEIPT_DELAY = 200;
const MAX_RECEIPT_IDS = 500;

export const newId = () => b64u(crypto.getRandomValues(new Uint8Array(9)));

// DIALOG_WAIT is how long a dialog message waits for the end-to-end keys of the room (the peer just came in,
// or reloaded) before it is marked failed, with Retry.
const DIALOG_WAIT = 20000;

// V2_NOTICES names the interface string for each protocol v2 notice the user should read.
const V2_NOTICES = { missing: 'e2e_missing', replayed: 'e2e_replayed', 'old-epoch': 'e2e_old_epoch', fork: 'e2e_fork' };

// FILE_CAP is the largest file a room transfers (docs/client.md): chunks travel as separate
// encrypted messages through the relay's bounded per-room buffer, paced by FILE_WINDOW.
export const FILE_CAP = 8 * 1024 * 1024;
export const FILE_CHUNK = 32 * 1024;
// FILE_WINDOW is how many chunks may be in flight before the receiver acknowledges. A chunk's frame
// is 48 KiB after padding, and protocol.md §5 asks a sender to keep under a quarter of the relay's
// per-room buffer unacknowledged (bufferBytes/4 = 256 KiB by default): 5 × 48 KiB = 240 KiB.
const FILE_WINDOW = 5;
const FILE_ACK_EVERY = 2; // under half the window, so the sender rarely stalls waiting for an ack
export const MAX_TEXT = MAX_DATA - 1024;

export const stats = { send: [], recv: [], epoch: [] };

export class Room extends EventTarget {
  // dialog, for an accounts dialog, is {peerName, peerArmored, peerFp, outbox, beforeOpen}: keys come from the
  // directory (pinned by the page) instead of an invite-secret key exchange, and what the peer cannot get now
  // waits in the relay's mailbox. outbox keeps the dialog's sent messages across rooms.
  constructor({ crypto, wsURL, dialog = null }) {
    super();
    this.crypto = crypto;
    this.dialog = dialog;
    this.conn = new RoomConn(wsURL);
    if (dialog) this.conn.beforeOpen = dialog.beforeOpen;
    // Acknowledge what was processed, not what arrived: a reload takes back the rest (seat.mjs; a dialog's
    // sessionStorage in app.mjs), so an entry received but still queued behind a slow one is not lost.
    this.conn.manualSeen = true;
    this.present = new Set();
    this.peers = new Map(); // member -> peer view
    this.blocked = new Map(); // member -> pending key change
    // Relay events wait until the room's crypto state exists: a key announcement may arrive
    // before create/join has finished setting it up.
    this.queue = new Promise((resolve) => {
      this.markStarted = resolve;
    });
    this.files = new Map(); // incoming id -> {header, parts, got}
    this.outgoing = new Map(); // outgoing id -> {acked, wake}
    this.ended = false;
    this.outbox = dialog?.outbox ?? new Outbox();
    this.outbox.attempt = (e) => this.attempt(e);
    this.receipts = []; // ids of received messages to confirm
    this.receiptTimer = 0;
    this.seenMail = new Set(); // mailbox item ids shown, so that one fetched twice shows once
    this.elsewhere = new Set(); // mailbox item ids left at the relay for another device of this account
    this.timer = new ConvTimer(); // the conversation's disappearing-message timer
    this.seenIds = new Set(); // chat message ids shown, so one sent again after a reload is not shown twice
    this.resend = new Resend();
    this.listen();
  }

  listen() {
    for (const t of ['frame', 'presence', 'closed', 'lost', 'state', 'error', 'dialog', 'mail']) {
      this.conn.addEventListener(t, (ev) => this.serial(async () => {
        try {
          await this[`on_${t}`](ev.detail);
        } finally {
          // An entry of the room's log is processed: acknowledge it, and let the page keep the mark.
          const seq = t === 'lost' ? ev.detail.to : ev.detail.seq;
          if (['frame', 'presence', 'lost'].includes(t) && seq) {
            this.conn.seen(seq);
            this.emit('processed', { seq });
          }
        }
      }));
    }
    // Not serialized: a key change blocks sending at once, before anything queued is encrypted.
    this.conn.addEventListener('key', (ev) => this.on_key(ev.detail));
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  // serial runs relay events one after the other, so decryption order is the relay's order.
  serial(fn) {
    this.queue = this.queue.then(fn).catch((e) => this.emit('problem', e));
    return this.queue;
  }

  async create({ max = 2 } = {}) {
    const secret = b64u(crypto.getRandomValues(new Uint8Array(32)));
    const j = await this.conn.create(max);
    this.invite = { room: j.room, cap: j.cap, secret };
    await this.start(j, secret);
    return this.invite;
  }

  // join joins with an invite. prepare runs once the relay has let this tab in and before the key exchange:
  // the page makes the key there, so a dead or wrong invite is told before any key is made.
  async join(invite, prepare = async () => {}) {
    const j = await this.conn.join(invite.room, invite.cap);
    this.invite = invite;
    await prepare();
    await this.start(j, invite.secret);
  }

  // resume takes back this tab's seat in an anonymous room after a reload (seat.mjs holds what it needs).
  // prepare runs once the relay gave the seat back, as in join. The epoch keys died with the old page: the
  // seat comes back as a restarted member (docs/e2e.md §13) when it had held an epoch.
  async resume(seat, prepare = async () => {}) {
    const j = await this.conn.resumeFrom(seat.resume, seat.last);
    this.invite = { room: seat.room, cap: seat.cap, secret: seat.secret };
    this.timer = new ConvTimer(seat.timer);
    await prepare();
    await this.start(j, seat.secret, { seed: seat.seed, restarted: seat.hadEpoch });
    return j;
  }

  // joinDialog joins an accounts dialog room (docs/accounts.md §6), or takes back this tab's
  // place after a reload when a resume token is known.
  // A seat taken back after a reload whose page had held an epoch comes back restarted (docs/e2e.md §13).
  async joinDialog(room, cap, saved = null) {
    let j = null;
    let restarted = false;
    if (saved) {
      try {
        j = await this.conn.resumeFrom(saved.resume, saved.last);
        restarted = saved.hadEpoch === true;
        this.spent = Array.isArray(saved.spent) ? saved.spent.filter((x) => typeof x === 'string').slice(-16) : [];
      } catch {
        this.conn = Object.assign(new RoomConn(this.conn.url), { beforeOpen: this.conn.beforeOpen });
        this.listen();
        j = null;
      }
    }
    if (!j) j = await this.conn.join(room, cap);
    this.invite = null;
    await this.start(j, null, { restarted });
  }

  // start sets up the room's crypto; seed is the identity the tab keeps for its seat (anonymous rooms).
  async start(j, secret, { seed = this.seed ?? null, restarted = false } = {}) {
    this.member = j.member;
    this.max = j.max;
    for (const m of j.members) if (m !== j.member) this.present.add(m);
    if (!this.dialog) {
      // Protocol v2: identities, key packages and epochs replace the per-message OpenPGP encryption.
      this.v2 = { ready: false, shown: new Set(), views: new Map(), wake: [] };
      const capture = globalThis.cleanrelayCaptureKeys === true; // tests only: see docs/e2e.md §13
      await this.v2apply(await this.crypto.call('v2start', { roomId: j.room, secret, member: j.member, present: [...this.present], capture, seed, restarted }));
      this.markStarted();
      return;
    }
    // The peer's directory key, pinned in the worker: it checks the peer's prekeys and mailbox items (§9).
    await this.crypto.call('dialog');
    await this.crypto.call('members', { present: [PEER] });
    await this.setDialogPeer();
    // Live messages: protocol v2 with the two account keys as identities, and no announcements.
    this.v2 = { ready: false, shown: new Set(), views: new Map(), wake: [] };
    const capture = globalThis.cleanrelayCaptureKeys === true;
    await this.v2apply(await this.crypto.call('v2dialog', { roomId: j.room, member: j.member, present: [...this.present], peerArmored: this.dialog.peerArmored, capture, restarted, spent: restarted ? this.spent ?? [] : [] }));
    this.markStarted();
    this.serial(() => this.fetchMail());
    this.outbox.wake();
  }

  // v2apply sends the worker's frames in order and turns its notes into the room's events.
  async v2apply(r, t0 = performance.now()) {
    for (const p of r.payloads) this.conn.send(p);
    if (r.keys) (globalThis.cleanrelayKeys ??= []).push(...r.keys);
    if (r.spent) this.spent = r.spent; // kept with the dialog's seat before the 'epoch' event saves it
    this.v2.ready = r.canSend;
    this.wakeSenders();
    for (const n of r.notes) {
      if (n.code === 'identity' && n.status === 'new') this.v2.views.set(n.member, n.peer);
      else if (n.code === 'identity' && n.status === 'same') this.sameIdentity(n);
      else if (n.code === 'before-restart') {
        this.resend.missed(n.member, n.epoch, n.n);
        if (this.dialog && !this.v2.lostTold) {
          this.v2.lostTold = true;
          this.emit('reloadlost', { member: n.member });
        }
      }
      else if (n.code === 'identity' && n.status === 'changed') {
        const change = { status: 'changed', peer: n.peer, offered: n.offered };
        this.blocked.set(n.member, change);
        this.emit('keychange', change);
      } else if (n.code === 'epoch') {
        stats.epoch.push({ t0, t1: performance.now(), epoch: n.epoch, committer: n.member === this.member, members: n.members.length });
        if (n.ours) this.emit('epoch', { epoch: n.epoch });
        // A member is shown as verified once an epoch that includes it is ours: then we can talk.
        for (const m of n.ours ? n.members : []) {
          if (m !== this.member && this.v2.views.has(m) && !this.v2.shown.has(m)) {
            this.v2.shown.add(m);
            this.peers.set(m, this.v2.views.get(m));
            this.emit('peer', this.v2.views.get(m));
          }
        }
      } else if (n.code !== 'identity') {
        const swap = n.code === 'forged' && (n.kind === 'identity' || n.kind === 'keypackage');
        const key = n.code === 'forged' && n.kind === 'message' ? 'e2e_tampered' : V2_NOTICES[n.code];
        // The notice's own code is protocol v2's (docs/e2e.md), not a relay error code: it is named e2e, so that
        // the page does not look it up among the relay's errors.
        this.emit('problem', { message: t(key ?? 'e2e_other', { n: n.member, k: n.count }), detail: n.text, forged: swap, e2e: n.code });
      }
    }
    for (const m of r.messages) {
      await this.onPlain({ from: m.from, seq: null, verified: true }, m.data, { t0, worker: r.ms });
    }
    if (this.v2.ready && this.resend.unread.size) await this.askAgain();
    if (this.v2.ready && this.receipts.length && !this.receiptTimer) this.receiptTimer = setTimeout(() => this.flushReceipts(), RECEIPT_DELAY);
  }

  // wakeSenders lets dialog messages that wait for the room's keys look again.
  wakeSenders() {
    for (const w of this.v2?.wake.splice(0) ?? []) w();
  }

  // whenSendable waits, in a dialog whose peer is present, until the room's epoch lets us seal (the peer just
  // came in, or reloaded and waits for a new epoch: nothing is sealed that it could not open).
  async whenSendable() {
    const end = Date.now() + DIALOG_WAIT;
    while (this.v2 && this.viaFrames() && !this.v2.ready && !this.ended && !this.blocked.size) {
      const left = end - Date.now();
      if (left <= 0) throw this.whyNot() ?? coded('cannot send yet: waiting for the end-to-end keys of this room', 'e2e_waiting');
      await new Promise((resolve) => {
        this.v2.wake.push(resolve);
        setTimeout(resolve, Math.min(left, 1000));
      });
    }
    if (this.blocked.size) throw this.whyNot();
  }

  // seal seals data in the room's current epoch in the order of the relay's events (the serial queue), so a
  // message is never sealed in an epoch a frame already waiting has ended. inline is for callers that run
  // inside the queue themselves.
  seal(data, inline) {
    const call = () => this.crypto.call('v2seal', { data });
    if (inline) return call();
    return new Promise((resolve, reject) => {
      this.serial(() => call().then(resolve, reject));
    });
  }

  // sameIdentity takes a peer's new display key: a tab reloaded into its seat keeps its identity (seat.mjs)
  // and shows a new OpenPGP key.
  sameIdentity(n) {
    const old = this.v2.views.get(n.member);
    this.v2.views.set(n.member, n.peer);
    if (this.peers.has(n.member) && old?.fingerprint !== n.peer.fingerprint) {
      this.peers.set(n.member, n.peer);
      this.emit('peer', n.peer);
    }
  }

  // askAgain asks each peer for the messages this reloaded tab could not read (docs/e2e.md §13): the peer seals
  // them again in the current epoch, with their ids, so nobody shows one twice.
  async askAgain() {
    for (const { member, header } of this.resend.requests(newId)) {
      await this.sendEnvelope(header, undefined, { inline: true });
      this.emit('askedagain', { member, count: header.want.length });
    }
  }

  // onResend answers a reloaded member's request with what this tab still keeps.
  async onResend(meta, h) {
    const a = this.resend.answer(this.member, h);
    if (!a) return;
    let sent = 0;
    for (const e of a.again) {
      if (!this.canSend() || (this.v2 && !this.v2.ready)) break;
      await this.sendEnvelope(e.header, e.body, { inline: true });
      sent++;
    }
    this.emit('resent', { member: meta.from, asked: a.asked, sent });
  }
  async setDialogPeer() {
    const peer = await this.crypto.call('setPeer', { member: PEER, armored: this.dialog.peerArmored });
    this.peers.set(PEER, peer);
    this.emit('peer', peer);
  }

  // fetchMail shows, in order and once, what the dialog's peer left in the mailbox, acknowledges it once
  // decrypted, and confirms the messages to their sender.
  async fetchMail() {
    if (!this.dialog || this.ended) return;
    for (let round = 0; round < 64; round++) {
      let r;
      try {
        r = await mailbox.fetchFrom(this.dialog.peerName);
      } catch {
        return; // the mailbox is off or out of reach: nothing shown, nothing lost
      }
      if (!r.items.length) return;
      const ids = [];
      for (const it of r.items) {
        if (this.seenMail.has(it.id)) {
          if (!this.elsewhere.has(it.id)) ids.push(it.id);
          continue;
        }
        this.seenMail.add(it.id);
        // An item sealed with a prekey this browser does not hold stays at the relay: another device of this
        // account (the terminal, another browser) published that prekey and reads it (docs/e2e.md §9).
        if (await this.onCipher(mailbox.fromB64(it.data), { from: PEER, seq: null, mailbox: true }) === 'elsewhere') this.elsewhere.add(it.id);
        else ids.push(it.id);
      }
      if (ids.length) await mailbox.ack(this.dialog.peerName, ids).catch(() => {});
      this.emit('mailread', { n: ids.length });
      prekeys.topUp(); // the items used prekeys
      if (!r.more || !ids.length) return;
    }
  }

  // acceptKey makes a dialog peer's new directory key the one messages are encrypted to, after the user
  // compared it (the page pins it), and lifts the block.
  async acceptKey(armored, fp) {
    this.dialog.peerArmored = armored;
    this.dialog.peerFp = fp;
    await this.setDialogPeer();
    this.blocked.delete(PEER);
    if (this.v2) await this.serial(async () => this.v2apply(await this.crypto.call('v2dialogPeer', { armored })));
    this.emit('state', { online: this.conn.online, unblocked: true });
  }

  async on_presence(p) {
    if (p.event === 'join' || p.event === 'back') this.present.add(p.member);
    if (p.event === 'leave') {
      this.present.delete(p.member);
      this.peers.delete(p.member);
      this.blocked.delete(p.member);
      if (!this.dialog) this.outbox.gone(p.member);
    }
    if (this.v2) {
      const t0 = performance.now();
      await this.v2apply(await this.crypto.call('v2presence', { event: p.event, member: p.member }), t0);
      this.emit('presence', p);
      if (this.dialog && (p.event === 'join' || p.event === 'back')) this.outbox.wake(); // what waited for the contact goes now
      return;
    }
    this.emit('presence', p);
  }

  async on_frame(f) {
    const t0 = performance.now();
    let kind;
    let body;
    try {
      const p = decodePayload(f.payload);
      kind = p.kind;
      body = p.body.slice(); // a copy of just the body: the worker is sent this, not the whole frame buffer
    } catch (e) {
      // Only this frame is dropped: what came before stays, and the room goes on.
      this.emit('problem', { message: t('frame_unreadable', { n: f.from }), detail: e.message });
      return;
    }
    if (this.v2) {
      if (!KINDS_V2.includes(kind)) {
        // Version rule (docs/e2e.md §10): told plainly, and nothing is encrypted to that member.
        const who = this.dialog ? this.dialog.peerName : f.from;
        this.emit('problem', { message: kind === KIND_KEY || kind === KIND_PGP ? t('e2e_v1_peer', { n: who }) : t('frame_unknown_kind', { n: who, k: kind }) });
        return;
      }
      await this.v2apply(await this.crypto.call('v2frame', { from: f.from, kind, body }), t0);
    }
  }

  // onCipher handles one dialog payload that came through the mailbox. It resolves to 'elsewhere' for an item
  // sealed with a prekey this browser does not hold (it is not acknowledged).
  async onCipher(payload, meta) {
    const t0 = performance.now();
    const who = this.dialog.peerName;
    let p;
    try {
      p = decodePayload(payload);
    } catch (e) {
      this.emit('problem', { message: t('frame_unreadable', { n: who }), detail: e.message });
      return;
    }
    if (p.kind !== KIND_MAIL) {
      // Items of protocol v1 (OpenPGP to the long-term key) exist only from before an upgrade: not read.
      this.emit('problem', { message: t('mail_old_format', { n: who }) });
      return;
    }
    const r = await this.crypto.call('mailOpen', { member: PEER, body: p.body.slice() });
    prekeys.save(r.stored);
    if (r.error) {
      this.emit('problem', { message: t(r.error === 'replayed' ? 'mail_replayed' : 'frame_unreadable', { n: who }), detail: r.message });
      return r.elsewhere ? 'elsewhere' : undefined;
    }
    await this.onPlain({ ...meta, verified: true }, r.data, { t0 });
  }

  // onPlain handles a decrypted envelope; timing is recorded for chat messages.
  async onPlain(meta, plain, timing) {
    let header;
    let data;
    try {
      ({ header, body: data } = decodeEnvelope(plain));
    } catch (e) {
      this.emit('problem', { message: t('frame_unreadable', { n: meta.from }), detail: e.message });
      return;
    }
    if (header.k === 'msg') {
      if (this.seenIds.has(header.id)) return; // sent again after a reload, and already shown here
      this.seenIds.add(header.id);
      this.emit('message', { ...meta, id: header.id, text: String(header.text), ts: header.ts, ttl: ttlOf(header.ttl), mine: false });
      stats.recv.push({ ...timing, t1: performance.now() });
      if (meta.verified) this.queueReceipt(header.id);
    } else if (header.k === 'rcpt') {
      // A receipt: the peer decrypted these messages (docs/e2e.md §Receipts). Only signed ones count.
      if (meta.verified && Array.isArray(header.ids)) this.outbox.receipt(this.dialog ? PEER : meta.from, header.ids.filter((x) => typeof x === 'string').slice(0, MAX_RECEIPT_IDS));
    } else if (header.k === 'timer') {
      this.applyTimer(meta.from, header);
    } else if (header.k === 'resend') {
      await this.onResend(meta, header);
    } else if (header.k === 'file') {
      this.onFileHeader(meta, header);
    } else if (header.k === 'chunk') {
      await this.onChunk(meta, header, data);
    } else if (header.k === 'fack') {
      const o = this.outgoing.get(header.id);
      if (o) {
        o.acked = Math.max(o.acked, header.n);
        o.wake?.();
      }
    }
  }

  on_closed(c) {
    this.ended = true;
    this.outbox.stop();
    this.outbox.fail(coded('the room has ended', 'ended'));
    this.emit('ended', c);
  }

  on_lost(l) {
    this.emit('problem', { message: t('lost_entries', { from: l.from, to: l.to }) });
  }

  on_state(s) {
    if (s.online) {
      this.outbox.flush(); // a resume handed the waiting frames to the relay
      this.outbox.wake();
    }
    if (this.dialog) {
      if (s.online && s.resumed) this.serial(() => this.fetchMail()); // mail may have come while away
      if (s.members) {
        this.present = new Set(s.members.filter((m) => m !== this.member));
        return this.crypto.call('v2present', { present: [...this.present] }).then((r) => this.v2apply(r)).then(() => this.emit('state', s));
      }
      this.emit('state', s);
      return;
    }
    if (s.members && this.v2) {
      this.present = new Set(s.members.filter((m) => m !== this.member));
      return this.crypto.call('v2present', { present: [...this.present] }).then((r) => this.v2apply(r)).then(() => this.emit('state', s));
    }
    if (s.members) {
      this.present = new Set(s.members.filter((m) => m !== this.member));
      return this.crypto.call('members', { present: [...this.present] }).then(() => this.emit('state', s));
    }
    this.emit('state', s);
  }

  on_error(e) {
    this.emit('problem', e);
  }

  // on_dialog passes on that another user opened a dialog with this one (logged-in sessions only).
  on_dialog(d) {
    if (validName(d.from)) this.emit('dialog', { from: d.from });
  }

  // on_mail fetches what the dialog's peer left in the mailbox; mail from anyone else is the page's.
  on_mail(d) {
    if (!validName(d.from)) return null;
    if (this.dialog && d.from === this.dialog.peerName) return this.fetchMail();
    this.emit('mail', { from: d.from });
    return null;
  }

  // on_key blocks sending to a dialog peer who published a new key (or lost it), until the user accepts it.
  on_key(d) {
    if (!validName(d.user)) return;
    if (this.dialog && d.user === this.dialog.peerName) {
      this.blocked.set(PEER, { pending: true });
      this.emit('peerkey', { user: d.user });
    } else {
      this.emit('otherkey', { user: d.user });
    }
  }

  // canSend: a dialog accepts a message whenever its peer's key is set (it waits for the room's keys, or goes
  // to the mailbox); an anonymous room only with an epoch.
  canSend() {
    if (this.dialog) return !this.ended && this.peers.size > 0 && this.blocked.size === 0;
    if (this.v2) return !this.ended && this.v2.ready && this.blocked.size === 0;
    return !this.ended && this.peers.size > 0 && this.blocked.size === 0;
  }

  // viaFrames reports whether a dialog's message goes into the room now (the peer is there and so are we);
  // else it goes to the mailbox.
  viaFrames() {
    return !this.dialog || (this.present.size > 0 && this.conn.online);
  }

  // sendEnvelope encrypts and sends one envelope; state is 'sent', or 'queued' for a frame that waits in the
  // connection for the next resume; boxId is the mailbox item's id when it went there.
  // inline is for callers inside the serial queue (see seal).
  async sendEnvelope(header, body, { quiet = false, inline = false } = {}) {
    if (this.blocked.size) throw this.whyNot();
    const t0 = performance.now();
    const data = encodeEnvelope(header, body);
    if (this.dialog && !inline) await this.whenSendable();
    if (!this.viaFrames()) return this.sendMail(header, body, quiet, t0);
    const r = await this.seal(data, inline);
    if (r.keys) (globalThis.cleanrelayKeys ??= []).push(...r.keys);
    this.conn.send(r.payload);
    this.resend.keep(r.at, header, body);
    return { t0, t1: performance.now(), worker: r.ms, size: r.payload.length, state: this.conn.online ? 'sent' : 'queued', boxId: null };
  }

  // sendMail leaves one envelope in the mailbox for the dialog's peer, sealed with one of its one-time
  // prekeys (docs/e2e.md §9). With none to be had it rejects with code waiting_contact.
  async sendMail(header, body, quiet, t0) {
    const name = this.dialog.peerName;
    const k = await prekeys.take(name);
    const r = await this.crypto.call('mailSeal', { to: name, member: PEER, prekey: k.prekey, data: encodeEnvelope(header, body) });
    const boxId = (await mailbox.put(name, k.fingerprint, r.payload, { quiet })).id;
    return { t0, t1: performance.now(), worker: r.ms, size: r.payload.length, state: 'sent', boxId };
  }

  // queueReceipt confirms a decrypted message to its sender, gathered with others read at the same time.
  queueReceipt(id) {
    if (typeof id !== 'string') return;
    this.receipts.push(id);
    if (!this.receiptTimer) this.receiptTimer = setTimeout(() => this.flushReceipts(), RECEIPT_DELAY);
  }

  flushReceipts() {
    clearTimeout(this.receiptTimer);
    this.receiptTimer = 0;
    if (!this.receipts.length || this.ended || this.blocked.size) return;
    if (this.v2 && !this.v2.ready && this.viaFrames()) return; // sent once the room's keys are there
    const ids = this.receipts.splice(0, MAX_RECEIPT_IDS);
    this.sendEnvelope({ k: 'rcpt', ids }, undefined, { quiet: true }).catch(() => {
      this.receipts.unshift(...ids); // sent with the next one
    });
  }

  // need is who must confirm a message for it to be delivered: the dialog's peer, or the room's members.
  need() {
    return this.dialog ? [PEER] : [...this.peers.keys()];
  }

  // attempt sends one outbox entry once (Outbox calls it, and again on Retry).
  async attempt(e) {
    if (this.ended) throw coded('the room has ended', 'ended');
    if (e.kind === 'file') return this.sendFileOnce(e);
    const s = await this.sendEnvelope(e.header);
    if (s.boxId) e.boxIds = [s.boxId];
    stats.send.push(s);
    return s.state;
  }

  // whyNot is why nothing can be sent now, as an error whose code the page shows in the user's language.
  whyNot() {
    if (this.ended) return coded('the room has ended', 'ended');
    if (this.blocked.size) return coded('blocked: a member\'s key changed; compare the safety code first', 'blocked');
    if (this.v2 && !this.v2.ready) return coded('cannot send yet: waiting for the end-to-end keys of this room', 'e2e_waiting');
    if (!this.peers.size) return coded('cannot send yet: no verified member in the room', 'no_peer');
    return null;
  }

  async sendText(text, ttl = this.timer.ttl) {
    if (!this.canSend()) throw this.whyNot();
    const bytes = new TextEncoder().encode(text);
    if (bytes.length > MAX_TEXT) throw coded(`message too long (${bytes.length} bytes, at most ${MAX_TEXT})`, 'too_long');
    const msg = { k: 'msg', id: newId(), text, ts: Date.now(), ttl };
    this.seenIds.add(msg.id);
    this.emit('message', { ...msg, from: this.member, verified: true, mine: true });
    await this.outbox.send({ id: msg.id, kind: 'msg', header: msg, text, ttl, ts: msg.ts }, this.need());
    return msg;
  }

  // setTimer sets the conversation's disappearing-message timer for every member (docs/e2e.md §13, the timer
  // message): later messages and files of every member disappear ttl seconds after they are shown.
  async setTimer(ttl) {
    if (!this.canSend()) throw this.whyNot();
    const header = this.timer.message(ttl, newId());
    await this.sendEnvelope(header);
    this.applyTimer(this.member, header);
  }

  applyTimer(from, h) {
    if (this.timer.apply(from, h)) this.emit('timer', { ttl: this.timer.ttl, from, mine: from === this.member });
  }

  // sendFile sends a file as the outbox entry id (its state events tell how it goes); onProgress gets the
  // share of chunks sent.
  async sendFile(file, onProgress = () => {}, id = newId()) {
    if (!this.canSend()) throw this.whyNot();
    if (file.size > FILE_CAP) throw new Error(`file too large (${file.size} bytes, at most ${FILE_CAP})`);
    await this.outbox.send({ id, kind: 'file', file, name: file.name, size: file.size, ts: Date.now(), onProgress }, this.need());
  }

  async sendFileOnce(e) {
    const { id, file, onProgress } = e;
    const bytes = new Uint8Array(await file.arrayBuffer());
    const chunks = Math.max(1, Math.ceil(bytes.length / FILE_CHUNK));
    const o = { acked: 0, wake: null, ttl: this.timer.ttl };
    this.outgoing.set(id, o);
    let state = 'sent';
    const boxIds = [];
    const put = async (header, body, quiet) => {
      const s = await this.sendEnvelope(header, body, { quiet });
      if (s.state === 'queued') state = 'queued';
      if (s.boxId) boxIds.push(s.boxId);
    };
    try {
      await put({ k: 'file', id, name: String(file.name).slice(0, 200), type: String(file.type || 'application/octet-stream').slice(0, 100), size: bytes.length, chunks, ttl: o.ttl }, undefined, false);
      for (let i = 0; i < chunks; i++) {
        // The window applies to frames only: the mailbox answers each chunk, and nobody acknowledges there.
        while (i - o.acked >= FILE_WINDOW && this.viaFrames()) {
          if (this.ended) throw new Error('the room ended during the transfer');
          await new Promise((r) => {
            o.wake = r;
            setTimeout(r, 2000);
          });
        }
        await put({ k: 'chunk', id, i }, bytes.subarray(i * FILE_CHUNK, (i + 1) * FILE_CHUNK), true);
        onProgress?.((i + 1) / chunks);
      }
    } finally {
      this.outgoing.delete(id);
    }
    e.boxIds = boxIds;
    e.ttl = o.ttl;
    this.emit('filesent', { id, name: file.name, size: bytes.length, ttl: o.ttl });
    return state;
  }

  onFileHeader(meta, h) {
    if (!(h.size >= 0 && h.size <= FILE_CAP) || !(h.chunks >= 1 && h.chunks <= Math.ceil(FILE_CAP / FILE_CHUNK) + 1)) {
      this.emit('problem', { message: t('file_over_cap', { n: meta.from }) });
      return;
    }
    this.files.set(h.id, { h, meta, parts: new Array(h.chunks), got: 0 });
    this.emit('filestart', { ...meta, id: h.id, name: h.name, size: h.size });
  }

  async onChunk(meta, h, data) {
    const f = this.files.get(h.id);
    if (!f || f.meta.from !== meta.from || !(h.i >= 0 && h.i < f.h.chunks) || f.parts[h.i]) return;
    f.parts[h.i] = data.slice();
    f.got++;
    f.verified = (f.verified ?? true) && meta.verified && f.meta.verified;
    this.emit('fileprogress', { id: h.id, progress: f.got / f.h.chunks });
    // The window applies to frames only: nobody acknowledges chunks read from the mailbox. Without an epoch
    // there is nothing to seal an acknowledgement in (nor a frame chunk that could have been read).
    if (!meta.mailbox && (f.got % FILE_ACK_EVERY === 0 || f.got === f.h.chunks) && (!this.v2 || this.v2.ready)) {
      await this.sendEnvelope({ k: 'fack', id: h.id, n: f.got }, undefined, { inline: true });
    }
    if (f.got === f.h.chunks) {
      this.files.delete(h.id);
      const blob = new Blob(f.parts, { type: /^[\w.+-]+\/[\w.+-]+$/.test(f.h.type) ? f.h.type : 'application/octet-stream' });
      if (blob.size !== f.h.size) {
        this.emit('problem', { message: t('file_wrong_size', { name: f.h.name }) });
        return;
      }
      this.emit('file', { ...f.meta, id: h.id, name: f.h.name, type: blob.type, size: blob.size, blob, verified: f.verified, ttl: ttlOf(f.h.ttl) });
      if (f.verified) this.queueReceipt(h.id);
    }
  }

  async trust(member) {
    if (this.v2 && !this.dialog) {
      const r = await this.crypto.call('v2trust', { member });
      this.blocked.delete(member);
      this.v2.views.set(member, r.peer);
      this.v2.shown.delete(member);
      await this.v2apply(r);
      return;
    }
    const peer = await this.crypto.call('trustChanged', { member });
    this.blocked.delete(member);
    this.peers.set(member, peer);
    this.emit('peer', peer);
  }

  burn() {
    return this.conn.burn();
  }

  // destroy closes the connection; an anonymous room also wipes the tab's keys, a dialog keeps
  // the account key for the next dialog.
  async destroy() {
    this.ended = true;
    clearTimeout(this.receiptTimer);
    if (this.outbox.attempt) {
      this.outbox.stop();
      this.outbox.fail(coded('the room has ended', 'ended'));
    }
    this.conn.close();
    // A dialog keeps the account key for the next dialog; its epoch keys go with the room.
    await this.crypto.call(this.dialog ? 'v2wipe' : 'wipe').catch(() => {});
  }

  // leave gives up this member's place for good (a dialog the user steps out of).
  async leave() {
    this.ended = true;
    clearTimeout(this.receiptTimer);
    this.outbox.stop();
    await this.conn.leave().catch(() => {});
    if (this.v2) await this.crypto.call('v2wipe').catch(() => {});
  }
}
