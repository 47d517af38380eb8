// Module e2e-group runs protocol v2 for one member of a room: identities, key packages, epoch agreement, and messages.
//
// The relay orders every frame and stamps its sender, so all members see the same sequence; the
// rules below (docs/e2e.md §6) depend only on that sequence, so every member reaches the same epochs.
// Handlers return {send: [{kind, body}], notes: [{code, member, text}], messages: [...]}; the caller
// pads and sends the frames in order and shows the notes.
import { KeyPackage, Ed25519Public, wipePrivate, ml_kem768 } from './e2e-keys.mjs';
import { Commit, History, hex } from './e2e-commit.mjs';
import { Epoch, readHeader } from './e2e-epoch.mjs';
import { sealIdentity, openIdentity } from './e2e-identity.mjs';
import { KIND_IDENTITY, KIND_KEYPACKAGE, KIND_COMMIT, KIND_MESSAGE, E2EError, utf8, equal } from './e2e-core.mjs';

const result = () => ({ send: [], notes: [], messages: [] });

// RESTART marks a member's first key package of a session in its number (docs/e2e.md §5): the member holds
// no epoch keys (a new member, or a tab reloaded into its old seat) and must get a new epoch.
export const RESTART = 0x80000000;

export class Group {
  // room: the room id; member: our id; identity: an Identity (or e2e-pgp's PgpIdentity); key: the
  // invite key (anonymous rooms; null where identities come from the directory, see setPeer);
  // display: bytes shown to peers (our armored OpenPGP key), optional; verifierFor(pub) makes a
  // peer's verifier. onKey(kind, info, bytes), when set, sees message keys (only the forward-secrecy
  // test sets it).
  // restarted: this member came back into its old seat without its state (a resumed seat after a reload).
  // holdRestarted: nothing is sealed while a member of the epoch has restarted (dialogs: the one reader
  // could not open it; anonymous rooms ask for such messages again instead, docs/e2e.md §13).
  // spent: hex hashes of key packages the commits of this member's old page used (spentHashes, kept by a
  // dialog page across a reload): a restarted member handed one of them again takes it as used, not as a
  // peer that started over too (docs/e2e.md §13).
  constructor({ room, member, identity, key = null, display = new Uint8Array(0), onKey = null, verifierFor = (pub) => new Ed25519Public(pub), restarted = false, holdRestarted = false, spent = [] }) {
    Object.assign(this, { room, member, identity, key, display, onKey, verifierFor, restarted, holdRestarted });
    this.spent = new Set(spent);
    this.ctx = utf8(room);
    this.peers = new Map(); // member -> {pub, display, pending, kp, kpUsed, stash}
    this.present = new Set();
    this.history = new History();
    this.epochMembers = []; // members of the latest accepted commit, ours or not
    this.epoch = null; // our keys of the current epoch, if we are in it
    this.prev = null; // the epoch before, for messages sent before their sender saw the commit
    this.kpN = 0;
    this.own = null; // {kp, priv}: our latest key package
    this.first = 0; // the first epoch we held keys of (0: none yet)
  }

  async rotate() {
    wipePrivate(this.own?.priv);
    const kem = this.spare;
    this.spare = null;
    const n = (++this.kpN + (this.kpN === 1 ? RESTART : 0)) >>> 0;
    this.own = await KeyPackage.make(this.identity, 'keypackage', this.ctx, this.member, n, null, null, kem);
    // The next ML-KEM key is made while the worker is idle, off the path of the next epoch change.
    this.spareTimer = setTimeout(() => {
      this.spare = ml_kem768.keygen(globalThis.crypto.getRandomValues(new Uint8Array(64)));
    }, 0);
    return { kind: KIND_KEYPACKAGE, body: this.own.kp.raw };
  }

  // hello returns our identity announcement and latest key package: sent on joining a room with
  // others in it and again whenever someone joins.
  async hello() {
    const r = result();
    if (!this.key) {
      r.send.push(this.own ? { kind: KIND_KEYPACKAGE, body: this.own.kp.raw } : await this.rotate());
      return r;
    }
    const body = await sealIdentity(this.key, this.room, { member: this.member, pub: this.identity.pub, display: this.display });
    r.send.push({ kind: KIND_IDENTITY, body });
    r.send.push(this.own ? { kind: KIND_KEYPACKAGE, body: this.own.kp.raw } : await this.rotate());
    return r;
  }

  // setPresent replaces the set of other members present (from joined/resumed/state).
  async setPresent(list) {
    this.present = new Set(list.filter((m) => m !== this.member));
    const r = result();
    await this.maybeCommit(r);
    return r;
  }

  async onPresence(event, member) {
    if (event === 'leave') {
      this.present.delete(member);
      this.peers.delete(member);
      const r = result();
      await this.maybeCommit(r);
      return r;
    }
    this.present.add(member);
    return event === 'join' ? this.hello() : result();
  }

  // onFrame handles a v2 frame the relay stamped as sent by from; a frame that fails its checks is
  // reported in notes and changes nothing.
  async onFrame(from, kind, body) {
    const r = result();
    // A restarted member (docs/e2e.md §13) is sent again what came after its last processed entry: frames of
    // members it does not know yet and messages of epochs before its first cannot be its business any more.
    if (this.restarted && !this.first && kind !== KIND_IDENTITY && !this.peers.has(from)) {
      try {
        if (kind === KIND_MESSAGE) this.unreadable(r, from, body);
      } catch (e) {
        if (!(e instanceof E2EError)) throw e; // a header that does not parse: nothing to ask for
      }
      return r;
    }
    try {
      if (kind === KIND_IDENTITY) await this.onIdentity(r, from, body);
      else if (kind === KIND_KEYPACKAGE) await this.onKeyPackage(r, from, body);
      else if (kind === KIND_COMMIT) await this.onCommit(r, from, body);
      else if (kind === KIND_MESSAGE) await this.onMessage(r, from, body);
      else r.notes.push({ code: 'version', member: from, text: `member ${from} sent a frame of unknown kind ${kind}` });
    } catch (e) {
      if (!(e instanceof E2EError)) throw e;
      const what = { [KIND_IDENTITY]: 'identity', [KIND_KEYPACKAGE]: 'keypackage', [KIND_COMMIT]: 'commit', [KIND_MESSAGE]: 'message' }[kind];
      r.notes.push({ code: e.code, member: from, kind: what, text: `member ${from}: ${e.message}` });
    }
    return r;
  }

  async onIdentity(r, from, body) {
    const id = await openIdentity(this.key, this.room, from, body);
    if (equal(id.pub, this.identity.pub)) throw new E2EError('forged', 'an identity announcement carries our own key');
    const p = this.peers.get(from);
    if (!p) {
      this.peers.set(from, { pub: id.pub, display: id.display, pending: null, kp: null, kpUsed: false, stash: null });
      r.notes.push({ code: 'identity', member: from, status: 'new', display: id.display });
    } else if (equal(p.pub, id.pub)) {
      p.display = id.display; // a tab reloaded into its seat keeps its identity but makes a new display key
      r.notes.push({ code: 'identity', member: from, status: 'same', display: p.display });
    } else {
      p.pending = { pub: id.pub, display: id.display };
      r.notes.push({ code: 'identity', member: from, status: 'changed', display: p.display, offered: id.display });
    }
  }

  // setPeer pins member's identity from outside the room (a dialog: the directory key the page has
  // checked against its pins); pub is what verifierFor takes.
  async setPeer(member, pub) {
    const p = this.peers.get(member);
    if (p) Object.assign(p, { pub, pending: null });
    else this.peers.set(member, { pub, display: new Uint8Array(0), pending: null, kp: null, kpUsed: false, stash: null });
    const r = result();
    await this.maybeCommit(r);
    return r;
  }

  // trust makes member's pending identity the pinned one (after the user compared safety codes).
  async trust(member) {
    const p = this.peers.get(member);
    if (!p?.pending) throw new Error('no pending key change for that member');
    // The new identity gets a new epoch: nothing more is sent in one agreed with the old one.
    Object.assign(p, { pub: p.pending.pub, display: p.pending.display, pending: null, kp: p.stash, kpUsed: false, stash: null, rekey: true });
    const r = result();
    await this.maybeCommit(r);
    return r;
  }

  blocked() {
    return [...this.peers.values()].some((p) => p.pending);
  }

  async onKeyPackage(r, from, body) {
    const p = this.peers.get(from);
    if (!p) throw new E2EError('forged', 'a key package from a member whose identity we do not have');
    let kp;
    try {
      kp = await KeyPackage.parse(body, 'keypackage', this.ctx, this.verifierFor(p.pub));
    } catch (e) {
      if (!p.pending) throw e;
      p.stash = await KeyPackage.parse(body, 'keypackage', this.ctx, this.verifierFor(p.pending.pub));
      return;
    }
    if (kp.member !== from) throw new E2EError('forged', `key package names member ${kp.member}`);
    if (p.kp && equal(kp.raw, p.kp.raw)) return; // sent again for a newcomer
    const restart = kp.n >= RESTART;
    if (p.kp && !restart && kp.n <= p.kp.n % RESTART) throw new E2EError('replayed', `key package ${kp.n} after ${p.kp.n % RESTART}`);
    const known = !!p.kp;
    p.kp = kp;
    p.kpUsed = this.spent.has(hex(await kp.hash())); // used by a commit of our old page: not fresh
    if (p.kpUsed) return;
    // A member of the current epoch that starts over has lost its keys: it needs a new epoch, and our
    // identity and key package again.
    if (restart && this.epochMembers.includes(from)) p.rekey = true;
    if (restart && known) r.send.push(...(await this.hello()).send);
    await this.maybeCommit(r);
  }

  // maybeCommit starts a new epoch when membership changed and we are the committer (docs/e2e.md §6.2).
  async maybeCommit(r) {
    if (this.blocked()) return;
    const P = [this.member, ...[...this.present].filter((m) => this.peers.get(m)?.pub)].sort((a, b) => a - b);
    const M = this.epochMembers;
    const fresh = (m) => m !== this.member && this.peers.get(m)?.kp && !this.peers.get(m).kpUsed;
    const need = M.some((m) => !P.includes(m)) || P.some((m) => (!M.includes(m) || this.peers.get(m)?.rekey) && fresh(m));
    if (!need) return;
    // A member that lost its keys (restart, key change) cannot chain the next epoch: it is skipped, and
    // does not commit itself before it has taken a commit, unless every other member present has started
    // over too (its latest key package opens a session): then nobody holds an epoch, and the lowest member
    // present starts from nothing (docs/e2e.md §6.2: two members of a dialog that reloaded at once).
    const restartedAll = () => P.every((m) => m === this.member || (fresh(m) && this.peers.get(m).kp.n >= RESTART));
    if (this.restarted && !this.history.number && !restartedAll()) return;
    const inBoth = P.filter((m) => M.includes(m) && !this.peers.get(m)?.rekey);
    const committer = inBoth.length ? inBoth[0] : P[0];
    if (committer !== this.member) return;
    const to = P.filter(fresh).map((m) => this.peers.get(m).kp);
    if (!to.length && !M.some((m) => m !== this.member && P.includes(m))) return;
    const { commit, secret } = await Commit.make(this.identity, {
      ctx: this.ctx, epoch: this.history.number + 1, prev: this.history.id, committer: this.member,
      committerHash: this.own ? await this.own.kp.hash() : undefined, to,
    });
    r.send.push({ kind: KIND_COMMIT, body: commit.raw });
    // The relay never hands a member its own frames back, so the committer takes its epoch now; the
    // rule that picks one committer (docs/e2e.md §6.2) keeps others from committing the same epoch.
    this.history.check(commit);
    await this.apply(r, commit, secret, this.member);
  }

  async onCommit(r, from, body) {
    const p = this.peers.get(from);
    if (!p) throw new E2EError('forged', 'a commit from a member whose identity we do not have');
    const c = await Commit.parse(body, this.ctx, this.verifierFor(p.pub));
    if (c.committer !== from) throw new E2EError('forged', `commit names committer ${c.committer}`);
    const mine = c.find(this.member) >= 0;
    if (this.history.number === 0 && !mine) return; // before our first epoch we cannot check the chain
    // A restarted member is replayed commits made for its old page's key packages: not its business any more.
    if (this.restarted && !this.first && !(this.own && equal(c.members.find((m) => m.member === this.member).hash, await this.own.kp.hash()))) return;
    if (equal(await c.id(this.ctx), this.history.id)) throw new E2EError('old-epoch', `the commit of epoch ${c.epoch} again`);
    if (this.history.number !== 0 && c.epoch === this.history.number) {
      r.notes.push({ code: 'fork', member: from, text: `member ${from} committed epoch ${c.epoch} too: two committers disagree` });
      return;
    }
    this.history.check(c);
    const secret = mine ? await c.open(this.ctx, this.own.kp, this.own.priv) : null;
    await this.apply(r, c, secret, from);
    // Our key package is spent: its private half is gone; offer a fresh one for the next epoch.
    if (mine) r.send.push(await this.rotate());
    await this.maybeCommit(r);
  }

  // apply makes c the current epoch; secret is null when c does not include us.
  async apply(r, c, secret, from) {
    await this.history.accept(this.ctx, c);
    for (const m of c.members) {
      const q = this.peers.get(m.member);
      if (q?.kp && m.member !== c.committer && equal(m.hash, await q.kp.hash())) Object.assign(q, { kpUsed: true, rekey: false });
    }
    this.epochMembers = c.members.map((m) => m.member);
    this.prev?.wipe();
    this.prev = this.epoch;
    this.epoch = secret ? await Epoch.create(c.epoch, this.history.id, secret, this.epochMembers) : null;
    if (this.epoch && !this.first) this.first = c.epoch; // the first epoch this member holds keys of
    secret?.fill(0);
    r.notes.push({ code: 'epoch', member: from, epoch: c.epoch, members: this.epochMembers, ours: !!this.epoch });
  }

  // unreadable notes a message sent before this restarted member got its first epoch: its keys died with the
  // reloaded page, so the sender is asked to send it again (the note names its epoch and number).
  unreadable(r, from, body) {
    const h = readHeader(body);
    r.notes.push({ code: 'before-restart', member: from, epoch: h.epoch, n: h.n, text: `member ${from} wrote message ${h.n} of epoch ${h.epoch} before this member restarted` });
  }

  async onMessage(r, from, body) {
    const h = readHeader(body);
    if (this.restarted && (!this.first || h.epoch < this.first)) {
      this.unreadable(r, from, body);
      return;
    }
    const e = [this.epoch, this.prev].find((x) => x?.number === h.epoch);
    if (!e) {
      if (h.epoch > this.history.number || !this.history.number) {
        r.notes.push({ code: 'not-member', member: from, text: `member ${from} wrote in epoch ${h.epoch}, which does not include us` });
        return;
      }
      throw new E2EError('old-epoch', `message from epoch ${h.epoch}, whose keys are deleted`);
    }
    const onKey = this.onKey ? (k) => this.onKey('recv', { epoch: h.epoch, sender: from, n: h.n }, k.slice()) : null;
    const { plaintext, missing } = await e.open(from, body, onKey);
    if (missing) r.notes.push({ code: 'missing', member: from, count: missing, text: `${missing} message(s) from member ${from} did not arrive (dropped by the relay?)` });
    if (e === this.prev && this.epoch?.chains.has(from)) this.prev.chains.delete(from);
    r.messages.push({ from, plaintext, epoch: h.epoch, n: h.n });
  }

  // spentHashes returns the hex hashes of the key packages the latest accepted commits used (at most 16): what a
  // dialog page keeps across a reload (constructor's spent).
  spentHashes() {
    return [...this.spent, ...this.history.used].slice(-16);
  }

  // restartedPeer reports whether a member of our epoch has started over and waits for a new one.
  restartedPeer() {
    return this.holdRestarted && this.epochMembers.some((m) => m !== this.member && this.peers.get(m)?.rekey);
  }

  canSend() {
    return !!this.epoch && this.epochMembers.length > 1 && !this.blocked() && !this.restartedPeer();
  }

  whyNot() {
    if (this.blocked()) return 'blocked: a member\'s key changed; compare the safety code first';
    if (this.restartedPeer()) return 'cannot send yet: the peer reloaded and waits for new end-to-end keys';
    if (!this.epoch) return 'cannot send yet: waiting for the end-to-end keys of this room';
    return '';
  }

  // seal returns the body of our next message in the current epoch.
  async seal(plaintext) {
    if (!this.canSend()) throw new Error(this.whyNot());
    const n = this.epoch.chains.get(this.member).next;
    const onKey = this.onKey ? (k) => this.onKey('send', { epoch: this.epoch.number, sender: this.member, n }, k.slice()) : null;
    return { kind: KIND_MESSAGE, body: await this.epoch.seal(this.member, plaintext, onKey) };
  }

  wipe() {
    clearTimeout(this.spareTimer);
    this.spare?.secretKey.fill(0);
    this.spare = null;
    this.epoch?.wipe();
    this.prev?.wipe();
    wipePrivate(this.own?.priv);
    this.epoch = this.prev = this.own = null;
  }
}
