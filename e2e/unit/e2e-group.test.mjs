// Protocol v2 groups behind a simulated relay that orders and stamps every frame, and misbehaves on cue.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Group } from '../../static/js/e2e-group.mjs';
import { Identity } from '../../static/js/e2e-keys.mjs';
import { inviteKey } from '../../static/js/e2e-identity.mjs';
import { KIND_COMMIT, KIND_MESSAGE, KIND_KEYPACKAGE, utf8 } from '../../static/js/e2e-core.mjs';

const dec = (b) => new TextDecoder().decode(b);

// Relay delivers each entry to every present member but its sender, in one order; hook may drop,
// change or repeat an entry for one receiver.
class Relay {
  constructor(room) {
    this.room = room;
    this.members = new Map(); // id -> {g, inbox: [], notes: [], messages: []}
    this.log = [];
    this.next = 1;
    this.hook = null;
  }

  async join() {
    const id = this.next++;
    const g = new Group({ room: this.room, member: id, identity: await Identity.generate(), key: this.key });
    const m = { g, notes: [], messages: [] };
    const others = [...this.members.keys()];
    this.members.set(id, m);
    this.log.push({ presence: 'join', member: id });
    await this.take(id, await g.setPresent(others));
    if (others.length) await this.take(id, await g.hello());
    await this.run();
    return id;
  }

  async leave(id) {
    this.members.delete(id);
    this.log.push({ presence: 'leave', member: id });
    await this.run();
  }

  async take(from, r) {
    for (const f of r.send) this.log.push({ from, kind: f.kind, body: f.body });
    const m = this.members.get(from);
    m.notes.push(...r.notes);
    m.messages.push(...r.messages.map((x) => ({ ...x, text: dec(x.plaintext) })));
  }

  async run() {
    while (this.log.length) {
      const e = this.log.shift();
      for (const [id, m] of [...this.members]) {
        if (id === e.from || id === e.member) continue;
        for (const d of this.hook?.(id, e) ?? [e]) {
          const r = d.presence ? await m.g.onPresence(d.presence, d.member) : await m.g.onFrame(d.from, d.kind, d.body);
          await this.take(id, r);
        }
      }
    }
  }

  async say(id, text) {
    const f = await this.members.get(id).g.seal(utf8(text));
    this.log.push({ from: id, kind: f.kind, body: f.body });
    await this.run();
  }

  texts(id) {
    return this.members.get(id).messages.map((m) => `${m.from}:${m.text}`);
  }

  codes(id) {
    return this.members.get(id).notes.filter((n) => !['identity', 'epoch'].includes(n.code)).map((n) => n.code);
  }
}

async function relay() {
  const r = new Relay('GroupRoomAAAAAAAAAAAAA');
  r.key = await inviteKey(crypto.getRandomValues(new Uint8Array(32)), r.room);
  return r;
}

test('two members agree on an epoch and talk; a third joins and sees only what comes after', async () => {
  const r = await relay();
  const a = await r.join();
  const b = await r.join();
  assert.equal(r.members.get(a).g.epoch?.number, 1);
  assert.equal(r.members.get(b).g.epoch?.number, 1);
  await r.say(a, 'hi b');
  await r.say(b, 'hi a');
  assert.deepEqual(r.texts(b), [`${a}:hi b`]);
  assert.deepEqual(r.texts(a), [`${b}:hi a`]);
  const c = await r.join();
  for (const id of [a, b, c]) assert.equal(r.members.get(id).g.epoch?.number, 2, `member ${id}`);
  await r.say(c, 'hello all');
  await r.say(a, 'welcome');
  assert.deepEqual(r.texts(c), [`${a}:welcome`]);
  assert.deepEqual(r.texts(b), [`${a}:hi b`, `${c}:hello all`, `${a}:welcome`]);
  await r.leave(b);
  assert.equal(r.members.get(a).g.epoch.number, 3);
  assert.deepEqual(r.members.get(c).g.epochMembers, [a, c]);
  await r.say(a, 'b is gone');
  assert.deepEqual(r.texts(c).at(-1), `${a}:b is gone`);
  for (const id of [a, c]) assert.deepEqual(r.codes(id), [], `member ${id} saw problems`);
});

test('a commit the relay replays later is caught as an old epoch', async () => {
  const r = await relay();
  const a = await r.join();
  let first = null;
  r.hook = (id, e) => {
    if (e.kind === KIND_COMMIT && !first) first = e;
    return [e];
  };
  await r.join();
  const b = 2;
  const c = await r.join(); // epoch 2
  r.hook = null;
  r.log.push(first);
  await r.run();
  assert.ok(r.codes(b).includes('old-epoch'), `b noted ${r.codes(b)}`);
  assert.equal(r.members.get(b).g.epoch.number, 2);
  await r.say(a, 'still fine');
  assert.equal(r.texts(c).at(-1), `${a}:still fine`);
});

test('a swapped key package is refused and never used', async () => {
  const r = await relay();
  await r.join();
  r.hook = (id, e) => {
    if (e.kind !== KIND_KEYPACKAGE) return [e];
    const body = e.body.slice();
    body[20] ^= 1; // the relay's own X25519 key
    return [{ ...e, body }];
  };
  const b = await r.join();
  assert.ok(r.codes(1).includes('forged'), `a noted ${r.codes(1)}`);
  assert.equal(r.members.get(1).g.epoch, null);
  assert.equal(r.members.get(b).g.epoch, null);
});

test('dropped, reordered and replayed messages are told apart', async () => {
  const r = await relay();
  const a = await r.join();
  const b = await r.join();
  const held = [];
  r.hook = (id, e) => {
    if (e.kind !== KIND_MESSAGE) return [e];
    const text = held.length;
    held.push(e);
    if (text === 0) return []; // dropped now, delivered late
    if (text === 1) return [e, e]; // replayed
    if (text === 2) return []; // dropped for good
    return [e, held[0]];
  };
  for (const t of ['one', 'two', 'three', 'four']) await r.say(a, t);
  assert.deepEqual(r.texts(b), [`${a}:two`, `${a}:four`, `${a}:one`]);
  assert.deepEqual(r.codes(b), ['missing', 'replayed', 'missing']);
});

test('sending waits for an epoch; a changed identity blocks it until trusted, then gets a new epoch', async () => {
  const r = await relay();
  const a = await r.join();
  const ga = r.members.get(a).g;
  await assert.rejects(ga.seal(utf8('x')), /waiting for the end-to-end keys/);
  const b = await r.join();
  assert.equal(ga.canSend(), true);
  const gb = r.members.get(b).g;
  gb.identity = await Identity.generate(); // b's tab came back with new keys in the same seat
  gb.own = null;
  await r.take(b, await gb.hello());
  await r.run();
  assert.equal(r.members.get(a).notes.filter((n) => n.code === 'identity').at(-1).status, 'changed');
  await assert.rejects(ga.seal(utf8('x')), /blocked/);
  await r.take(a, await ga.trust(b));
  await r.run();
  assert.equal(ga.epoch.number, 2);
  assert.equal(gb.epoch.number, 2);
  await r.say(a, 'after the change');
  assert.equal(r.texts(b).at(-1), `${a}:after the change`);
});

test('dialog identities: OpenPGP keys from the directory sign key packages and commits', async () => {
  const { PgpIdentity, PgpVerifier } = await import('../../static/js/e2e-pgp.mjs');
  const pgp = await import('../../static/js/pgp.mjs');
  const keys = new Map();
  const r = new Relay('DialogRoomAAAAAAAAAAAA');
  // Dialog members: no invite key and no identity announcements; the page pins directory keys.
  r.join = async function join() {
    const id = this.next++;
    keys.set(id, await pgp.generateKeyPair({ type: 'curve25519', name: `user${id}` }));
    const g = new Group({ room: this.room, member: id, identity: new PgpIdentity(keys.get(id)), verifierFor: (k) => new PgpVerifier(k) });
    const others = [...this.members.keys()];
    this.members.set(id, { g, notes: [], messages: [] });
    this.log.push({ presence: 'join', member: id });
    await this.take(id, await g.setPresent(others));
    for (const m of others) await this.take(id, await g.setPeer(m, keys.get(m).toPublic()));
    if (others.length) await this.take(id, await g.hello());
    await this.run();
    return id;
  };
  const onPresence = Group.prototype.onPresence;
  const a = await r.join();
  r.members.get(a).g.onPresence = async function (event, member) {
    const res = await onPresence.call(this, event, member);
    if (event === 'join') {
      const more = await this.setPeer(member, keys.get(member).toPublic());
      res.send.push(...more.send);
      res.notes.push(...more.notes);
    }
    return res;
  };
  const b = await r.join();
  assert.equal(r.members.get(a).g.epoch?.number, 1);
  assert.equal(r.members.get(b).g.epoch?.number, 1);
  await r.say(a, 'signed by openpgp');
  await r.say(b, 'and back');
  assert.deepEqual(r.texts(b), [`${a}:signed by openpgp`]);
  assert.deepEqual(r.texts(a), [`${b}:and back`]);
  assert.deepEqual(r.codes(a), []);
  // A key package signed by another OpenPGP key than the pinned one is refused.
  const mallory = await pgp.generateKeyPair({ type: 'curve25519', name: 'mallory' });
  const gb = r.members.get(b).g;
  gb.identity = new PgpIdentity(mallory);
  await r.take(b, { send: [await gb.rotate()], notes: [], messages: [] });
  await r.run();
  assert.deepEqual(r.codes(a), ['forged']);
});

test('a commit that names another committer than its sender is refused', async () => {
  const { Commit } = await import('../../static/js/e2e-commit.mjs');
  const r = await relay();
  const a = await r.join();
  const b = await r.join();
  const ga = r.members.get(a).g;
  const { commit } = await Commit.make(ga.identity, { ctx: ga.ctx, epoch: 2, prev: ga.history.id, committer: b, to: [] });
  r.log.push({ from: a, kind: KIND_COMMIT, body: commit.raw });
  await r.run();
  assert.deepEqual(r.codes(b), ['forged']);
  assert.equal(r.members.get(b).g.epoch.number, 1);
});

test('a member that starts over in its old seat (a reload) gets a new epoch', async () => {
  const r = await relay();
  const a = await r.join();
  const b = await r.join();
  await r.say(a, 'before the reload');
  const old = r.members.get(b).g;
  const g = new Group({ room: r.room, member: b, identity: old.identity, key: r.key }); // same identity, no keys
  r.members.get(b).g = g;
  await r.take(b, await g.setPresent([a]));
  await r.take(b, await g.hello());
  await r.run();
  assert.equal(r.members.get(a).g.epoch.number, 2);
  assert.equal(g.epoch?.number, 2);
  await r.say(a, 'after the reload');
  assert.equal(r.texts(b).at(-1), `${a}:after the reload`);
  assert.deepEqual(r.codes(a), []);
});

test('the oldest member starting over does not commit from nothing; the next oldest takes over', async () => {
  const r = await relay();
  const a = await r.join();
  const b = await r.join();
  const g = new Group({ room: r.room, member: a, identity: r.members.get(a).g.identity, key: r.key, restarted: true });
  r.members.get(a).g = g;
  await r.take(a, await g.setPresent([b]));
  await r.take(a, await g.hello());
  await r.run();
  assert.equal(r.members.get(b).g.epoch.number, 2);
  assert.equal(g.epoch?.number, 2);
  await r.say(a, 'back');
  await r.say(b, 'welcome back');
  assert.equal(r.texts(b).at(-1), `${a}:back`);
  assert.equal(r.texts(a).at(-1), `${b}:welcome back`);
  assert.deepEqual(r.codes(b), []);
});

test('a member reloaded into its seat is replayed the old epoch: it names the unreadable messages and nothing else', async () => {
  const r = await relay();
  const a = await r.join();
  const b = await r.join();
  // While b reloads, a writes twice in epoch 1; the relay replays those (and a's key package) to the new tab.
  const f1 = await r.members.get(a).g.seal(utf8('while you reloaded 1'));
  const f2 = await r.members.get(a).g.seal(utf8('while you reloaded 2'));
  const g = new Group({ room: r.room, member: b, identity: r.members.get(b).g.identity, key: r.key, restarted: true });
  r.members.get(b).g = g;
  const seen = r.members.get(b).notes.length;
  await r.take(b, await g.setPresent([a]));
  for (const f of [f1, f2]) await r.take(b, await g.onFrame(a, f.kind, f.body));
  await r.take(b, await g.onFrame(a, KIND_KEYPACKAGE, r.members.get(a).g.own.kp.raw));
  assert.deepEqual(r.members.get(b).notes.slice(seen).map((n) => [n.code, n.member, n.epoch, n.n]),
    [['before-restart', a, 1, 0], ['before-restart', a, 1, 1]]);
  await r.take(b, await g.hello());
  await r.run();
  assert.equal(g.epoch?.number, 2);
  // Once in, a message of the epoch before its first is still named, not read and not called old.
  await r.take(b, await g.onFrame(a, f1.kind, f1.body));
  assert.deepEqual(r.codes(b), ['before-restart', 'before-restart', 'before-restart']);
  await r.say(a, 'after');
  assert.equal(r.texts(b).at(-1), `${a}:after`);
  assert.deepEqual(r.codes(a), []);
});

test('both members of a pair back in their seats at once: the lower one commits from nothing', async () => {
  const r = await relay();
  const a = await r.join();
  const b = await r.join();
  await r.say(a, 'before the reloads');
  // Each keeps what its old page used (as a dialog page does): the other's new key packages are not among it.
  const ga = new Group({ room: r.room, member: a, identity: r.members.get(a).g.identity, key: r.key, restarted: true, spent: r.members.get(a).g.spentHashes() });
  const gb = new Group({ room: r.room, member: b, identity: r.members.get(b).g.identity, key: r.key, restarted: true, spent: r.members.get(b).g.spentHashes() });
  r.members.get(a).g = ga;
  r.members.get(b).g = gb;
  await r.take(a, await ga.setPresent([b]));
  await r.take(b, await gb.setPresent([a]));
  await r.take(a, await ga.hello());
  await r.take(b, await gb.hello());
  await r.run();
  assert.ok(ga.epoch, 'a holds an epoch');
  assert.equal(gb.epoch?.number, ga.epoch.number);
  await r.say(a, 'both back');
  await r.say(b, 'yes');
  assert.equal(r.texts(b).at(-1), `${a}:both back`);
  assert.equal(r.texts(a).at(-1), `${b}:yes`);
  assert.deepEqual([...r.codes(a), ...r.codes(b)], []);
});

test('a restarted dialog member ignores the replayed commit made for its old page\'s key package', async () => {
  const r = await relay();
  const commits = [];
  r.hook = (to, e) => {
    if (e.kind === KIND_COMMIT) commits.push(e);
    return [e];
  };
  const a = await r.join();
  const b = await r.join();
  assert.equal(commits.length, 1);
  // b's tab reloads; in a dialog its peer's identity is set from the directory at once, so the replay reaches
  // the group (an anonymous room skips it: the identity is not known yet).
  const g = new Group({ room: r.room, member: b, identity: r.members.get(b).g.identity, key: r.key, restarted: true });
  r.members.get(b).g = g;
  await r.take(b, await g.setPresent([a]));
  await r.take(b, await g.setPeer(a, r.members.get(a).g.identity.pub));
  await r.take(b, await g.hello());
  const seen = r.members.get(b).notes.length;
  await r.take(b, await g.onFrame(a, KIND_COMMIT, commits[0].body));
  assert.deepEqual(r.members.get(b).notes.slice(seen), []);
  r.hook = null;
  await r.run();
  assert.equal(g.epoch?.number, 2);
  assert.deepEqual(r.codes(b), []);
});

test('holdRestarted: a member seals nothing while a member of its epoch has restarted and waits for its new epoch', async () => {
  const r = await relay();
  const a = await r.join();
  const b = await r.join();
  const c = await r.join();
  const gb = r.members.get(b).g;
  gb.holdRestarted = true; // as in dialogs (e2e-worker.mjs v2dialog)
  // c's tab reloads into its seat: its restart key package reaches b; the commit that takes it in (a's: a is
  // the committer) and everything after it are held back from b, to be delivered later in the relay's order.
  const gc = new Group({ room: r.room, member: c, identity: r.members.get(c).g.identity, key: r.key, restarted: true });
  r.members.get(c).g = gc;
  const held = [];
  r.hook = (to, e) => {
    if (to === b && (held.length || e.kind === KIND_COMMIT)) {
      held.push(e);
      return [];
    }
    return [e];
  };
  await r.take(c, await gc.setPresent([a, b]));
  await r.take(c, await gc.hello());
  await r.run();
  assert.equal(held[0]?.kind, KIND_COMMIT, 'no commit was held back from b');
  assert.equal(gb.epoch.number, 2, 'b left its epoch before the commit');
  assert.equal(gc.epoch?.number, 3, 'c has no new epoch');
  assert.equal(gb.canSend(), false, 'b may seal in an epoch whose member c cannot read it');
  assert.match(gb.whyNot(), /reloaded/);
  await assert.rejects(gb.seal(utf8('into the old epoch')), /reloaded/);
  // Without the hold (anonymous rooms, which ask for such messages again instead) b could seal.
  gb.holdRestarted = false;
  assert.equal(gb.canSend(), true);
  gb.holdRestarted = true;
  // The commit arrives: b is in the new epoch with c, and c reads what b writes.
  r.hook = null;
  for (const e of held) await r.take(b, e.presence ? await gb.onPresence(e.presence, e.member) : await gb.onFrame(e.from, e.kind, e.body));
  await r.run();
  assert.equal(gb.epoch.number, 3);
  assert.equal(gb.canSend(), true);
  await r.say(b, 'after the new epoch');
  assert.equal(r.texts(c).at(-1), `${b}:after the new epoch`);
  assert.deepEqual([...r.codes(a), ...r.codes(b), ...r.codes(c)], []);
});

// forkCase: a and b agree on epoch 1 (a commits with b's first key package, which has the restart bit); a's tab
// reloads and its replay hands it b's first key package again, not b's next (docs/e2e.md §13). spent: what
// a's page kept of its old page's used key packages (null: nothing).
async function forkCase(keep) {
  const r = await relay();
  const kps = [];
  r.hook = (to, e) => {
    if (e.kind === KIND_KEYPACKAGE) kps.push(e);
    return [e];
  };
  const a = await r.join();
  const b = await r.join();
  r.hook = null;
  const first = kps.find((e) => e.from === b);
  assert.equal(r.members.get(a).g.epoch?.number, 1);
  const spent = keep ? r.members.get(a).g.spentHashes() : [];
  const g = new Group({ room: r.room, member: a, identity: r.members.get(a).g.identity, key: r.key, restarted: true, holdRestarted: true, spent });
  r.members.get(a).g = g;
  await r.take(a, await g.setPresent([b]));
  await r.take(a, await g.setPeer(b, r.members.get(b).g.identity.pub));
  await r.take(a, await g.onFrame(b, KIND_KEYPACKAGE, first.body));
  await r.take(a, await g.hello());
  await r.run();
  return { r, a, b, ga: g, gb: r.members.get(b).g };
}

test('a reloaded dialog member handed its peer\'s first key package again, which its old page used: no fork', async () => {
  // Without what the old page kept, the restarted member takes b for restarted too and commits from nothing:
  // a fork both sides see (what the kept hashes prevent; the test can tell the difference).
  const bad = await forkCase(false);
  assert.deepEqual([bad.r.codes(bad.a), bad.r.codes(bad.b)], [['fork'], ['fork']]);
  const { r, a, b, ga, gb } = await forkCase(true);
  assert.equal(ga.epoch?.number, 2);
  assert.equal(gb.epoch?.number, 2);
  await r.say(a, 'back');
  await r.say(b, 'welcome back');
  assert.equal(r.texts(b).at(-1), `${a}:back`);
  assert.equal(r.texts(a).at(-1), `${b}:welcome back`);
  assert.deepEqual([...r.codes(a), ...r.codes(b)], []);
});
