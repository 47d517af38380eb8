// Writes testdata/e2e/js-*.txt: protocol v2 vectors made by the JavaScript implementation, which the Go
// tests (relay/client/e2e) and the node tests both run. Usage: node gen-e2e-vectors.mjs
import { writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { Identity, KeyPackage, x25519, x25519FromSeed, ml_kem768 } from '../static/js/e2e-keys.mjs';
import { Commit, hex } from '../static/js/e2e-commit.mjs';
import { Epoch } from '../static/js/e2e-epoch.mjs';
import { inviteKey, sealIdentity } from '../static/js/e2e-identity.mjs';
import { utf8 } from '../static/js/e2e-core.mjs';
import { DIR } from './unit/e2e-vectors.mjs';
import { sealItem } from '../static/js/e2e-mailbox.mjs';
import { PgpIdentity } from '../static/js/e2e-pgp.mjs';
import * as pgp from '../static/js/pgp.mjs';

function seed(name, n) {
  const out = new Uint8Array(n);
  for (let i = 0, o = 0; o < n; i++, o += 32) out.set(createHash('sha256').update(`cleanrelay js seed ${name} ${i}`).digest().subarray(0, Math.min(32, n - o)), o);
  return out;
}

class Writer {
  constructor(kind, expect, comment) {
    this.lines = [];
    this.add('kind', kind);
    this.add('expect', expect);
    this.add('producer', 'js');
    if (comment) this.add('comment', comment);
  }

  add(k, v) {
    this.lines.push(`${k}: ${v}`);
  }

  write(name) {
    writeFileSync(new URL(name, DIR), `${this.lines.join('\n')}\n`);
  }
}

async function mkMembers(w, tag, kind, ctx, ids, n = 1) {
  const ms = new Map();
  for (const id of ids) {
    const s = [seed(`${tag} id ${id}`, 32), seed(`${tag} x ${id}`, 32), seed(`${tag} kem ${id}`, 64)];
    const sig = await Identity.fromSeed(s[0]);
    const { kp, priv } = await KeyPackage.make(sig, kind, ctx, id, n, s[1], s[2]);
    w.add('member', `${id} ${hex(s[0])} ${hex(s[1])} ${hex(s[2])}${n === 1 ? '' : ` ${n}`}`);
    ms.set(id, { id, sig, kp, priv });
  }
  return ms;
}

async function mkCommit(w, tag, ctx, epoch, prev, committer, committerHash, to) {
  const secret = seed(`${tag} secret`, 32);
  const eph = seed(`${tag} eph`, 32);
  w.add('committer', committer.id);
  w.add('epoch', epoch);
  w.add('prev', hex(prev));
  w.add('secret', hex(secret));
  w.add('ephemeral', hex(eph));
  const e = await x25519FromSeed(eph);
  for (const kp of to) {
    const r = seed(`${tag} kem random ${kp.member}`, 32);
    const dh = await x25519(e.priv, kp.x);
    const { sharedSecret } = ml_kem768.encapsulate(kp.ek, r);
    w.add('wrap', `${kp.member} ${hex(r)} ${hex(dh)} ${hex(sharedSecret)}`);
  }
  const { commit } = await Commit.make(committer.sig, {
    ctx, epoch, prev, committer: committer.id, committerHash, to, secret, ephemeralSeed: eph,
    kemRandom: (kp) => seed(`${tag} kem random ${kp.member}`, 32),
  });
  return commit;
}

async function session(file, tag, room, epoch, prev, ids, committer) {
  const w = new Writer('session', 'ok', `members ${ids.join(',')}; committer ${committer}; one message dropped, one reordered, one replayed, one from a sender claiming another id`);
  w.add('room', room);
  const ctx = utf8(room);
  const ms = await mkMembers(w, tag, 'keypackage', ctx, ids);
  for (const id of ids) w.add('keypackage', `${id} ${hex(ms.get(id).kp.raw)}`);
  const to = ids.filter((id) => id !== committer).map((id) => ms.get(id).kp);
  const c = await mkCommit(w, tag, ctx, epoch, prev, ms.get(committer), await ms.get(committer).kp.hash(), to);
  w.add('commit', hex(c.raw));
  const id = await c.id(ctx);
  w.add('epoch id', hex(id));
  const e = await Epoch.create(epoch, id, seed(`${tag} secret`, 32), ids);
  const [a, b] = [ids[ids.length - 1], ids[0]];
  const seal = (s, t) => e.seal(s, utf8(t));
  const line = (s, n, r, t, ct) => w.add('message', `${s} ${n} ${r} ${t ? hex(utf8(t)) : '-'} ${hex(ct)}`);
  const b0 = await seal(b, 'первое');
  const a0 = await seal(a, 'first');
  const a1 = await seal(a, 'y'.repeat(2000));
  const a2 = await seal(a, 'third');
  const b1 = await seal(b, '');
  const claimed = b1.slice();
  claimed.set([0, 0, 0, a], 5); // names sender a; the relay stamps b
  line(b, 0, 'ok', 'первое', b0);
  line(a, 1, 'dropped', 'y'.repeat(2000), a1);
  line(a, 0, 'ok', 'first', a0);
  line(a, 2, 'missing=1', 'third', a2);
  line(b, 0, 'replayed', '', b0);
  line(b, 1, 'forged', '', claimed);
  line(b, 1, 'ok', '', b1);
  w.write(file);
}

async function keyPackageForged() {
  const w = new Writer('keypackage', 'forged', 'the relay swapped the ML-KEM key of a signed key package for its own');
  const room = 'Js0swapRoomAAAAAAAAAAA';
  w.add('room', room);
  const ms = await mkMembers(w, 'forged', 'keypackage', utf8(room), [6]);
  const b = ms.get(6).kp.raw.slice();
  b.set(ml_kem768.keygen(seed('relay kem', 64)).publicKey, 9 + 32);
  w.add('keypackage', `6 ${hex(b)}`);
  w.write('js-keypackage-forged.txt');
}

async function commitTo(w, tag, ctx, committer, to, epoch = 1) {
  const secret = seed(`${tag} secret`, 32);
  w.add('committer', committer.id);
  w.add('secret', hex(secret));
  const { commit } = await Commit.make(committer.sig, {
    ctx, epoch, committer: committer.id, to: [to], secret, ephemeralSeed: seed(`${tag} eph`, 32), kemRandom: () => seed(`${tag} kem random`, 32),
  });
  return commit;
}

async function swapped() {
  const w = new Writer('open-commit', 'swapped', 'the commit names an older key package of member 8 than the one member 8 holds');
  const room = 'Js0swapRoomBBBBBBBBBBB';
  w.add('room', room);
  const ctx = utf8(room);
  const ms = await mkMembers(w, 'swapped', 'keypackage', ctx, [2, 8]);
  const old = await KeyPackage.make(ms.get(8).sig, 'keypackage', ctx, 8, 7, seed('old x', 32), seed('old kem', 64));
  w.add('commit', hex((await commitTo(w, 'swapped', ctx, ms.get(2), old.kp)).raw));
  w.write('js-commit-swapped.txt');
}

async function prekey() {
  const w = new Writer('prekey', 'replayed', 'member 1 reaches member 2 through prekey 3 of user bob; the relay delivers it again');
  w.add('user', 'bob');
  const ctx = utf8('prekey:bob');
  const ms = await mkMembers(w, 'prekey', 'prekey', ctx, [1, 2], 3);
  const c = await commitTo(w, 'prekey', ctx, ms.get(1), ms.get(2).kp);
  w.add('commit', hex(c.raw));
  w.add('commit', hex(c.raw));
  w.write('js-prekey-replayed.txt');
}

// mailItem: member 1 leaves a message for alice, who is away, with her prekey 8; the relay delivers it twice.
async function mailItem() {
  const w = new Writer('mail-item', 'replayed', 'member 1 leaves a message for user alice, who is away, sealed with her prekey 8; the relay delivers it again');
  w.add('user', 'alice');
  const ctx = utf8('prekey:alice');
  const ms = await mkMembers(w, 'mail', 'prekey', ctx, [1, 2], 8);
  const tag = 'mail';
  const secret = seed(`${tag} secret`, 32);
  const eph = seed(`${tag} eph`, 32);
  const c = await mkCommit(w, tag, ctx, 1, new Uint8Array(32), ms.get(1), new Uint8Array(32), [ms.get(2).kp]);
  const pt = utf8('\u0000\u0019{"k":"msg","id":"j1"}hello alice, from the mailbox');
  const item = await sealItem(ms.get(1).sig, 'alice', ms.get(2).kp, pt, { secret, ephemeralSeed: eph, kemRandom: (kp) => seed(`${tag} kem random ${kp.member}`, 32) });
  if (hex(item.subarray(2, 2 + c.raw.length)) !== hex(c.raw)) throw new Error("the item's commit is not the commit of the inputs");
  w.add('plaintext', hex(pt));
  w.add('item', hex(item));
  w.add('item', hex(item));
  w.write('js-mail-item-replayed.txt');
}

async function history() {
  const w = new Writer('history', 'old-epoch', 'epochs 1, 2, 3, then the relay replays epoch 2');
  const room = 'Js0historyRoomAAAAAAAA';
  w.add('room', room);
  const ctx = utf8(room);
  const ms = await mkMembers(w, 'history', 'keypackage', ctx, [3, 5]);
  let prev = new Uint8Array(32);
  const cs = [];
  for (let epoch = 1; epoch <= 3; epoch++) {
    const { kp } = await KeyPackage.make(ms.get(5).sig, 'keypackage', ctx, 5, epoch, seed(`h x ${epoch}`, 32), seed(`h kem ${epoch}`, 64));
    const { commit } = await Commit.make(ms.get(3).sig, {
      ctx, epoch, prev, committer: 3, committerHash: await ms.get(3).kp.hash(), to: [kp],
      secret: seed(`h s ${epoch}`, 32), ephemeralSeed: seed(`h e ${epoch}`, 32), kemRandom: () => seed(`h r ${epoch}`, 32),
    });
    prev = await commit.id(ctx);
    cs.push(commit);
    w.add('commit', `3 ${hex(commit.raw)}`);
  }
  w.add('commit', `3 ${hex(cs[1].raw)}`);
  w.write('js-history-old-epoch.txt');
}

async function identity() {
  const w = new Writer('identity', 'ok', 'an identity announcement with an armored display key');
  const room = 'Js0identityRoomAAAAAAA';
  w.add('room', room);
  const secret = seed('invite', 32);
  w.add('invite secret', hex(secret));
  const ms = await mkMembers(w, 'identity', 'keypackage', utf8(room), [2]);
  const b = await sealIdentity(await inviteKey(secret, room), room, { member: 2, pub: ms.get(2).sig.pub, display: utf8('-----BEGIN PGP PUBLIC KEY BLOCK-----') }, seed('iv', 12));
  w.add('identity', `2 ${hex(b)}`);
  w.write('js-identity-ok.txt');
}

// pgpKeyPackage: key packages signed by an OpenPGP identity (pgp: a v4 Curve25519 key; pgp6: an RFC 9580 v6
// key), as dialogs sign them; the second was altered after signing. Not reproducible: OpenPGP signatures carry a time.
async function pgpKeyPackage(name, type) {
  const key = await pgp.generateKeyPair({ type, name: 'js dialog user' });
  const room = 'Js0dialogRoomAAAAAAAAA';
  const { kp } = await KeyPackage.make(new PgpIdentity(key), 'keypackage', utf8(room), 2, 1, seed('pgp x', 32), seed('pgp kem', 64));
  for (const expect of ['ok', 'forged']) {
    const w = new Writer('pgp-keypackage', expect, `a key package signed with an OpenPGP v${key.keyPacket.version} key (not reproducible: OpenPGP signatures carry a time)`);
    w.add('room', room);
    w.add('pgp public', hex(key.toPublic().write()));
    const b = kp.raw.slice();
    if (expect === 'forged') b[12] ^= 1;
    w.add('keypackage', `2 ${hex(b)}`);
    w.write(`js-${name}-keypackage-${expect}.txt`);
  }
}

await session('js-session-pair.txt', 'pair', 'Js0pairRoomAAAAAAAAAAA', 1, new Uint8Array(32), [3, 4], 4);
await session('js-session-group.txt', 'group', 'Js0groupRoomAAAAAAAAAA', 12, seed('prev', 32), [1, 2, 3, 6], 2);
await keyPackageForged();
await swapped();
await prekey();
await history();
await identity();
await pgpKeyPackage('pgp', 'curve25519');
await pgpKeyPackage('pgp6', 'v6');
await mailItem();
