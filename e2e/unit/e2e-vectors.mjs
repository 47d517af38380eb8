// Reading, checking and writing the protocol v2 test vectors of testdata/e2e (docs/e2e.md §12).
import { readFileSync } from 'node:fs';
import { Identity, KeyPackage } from '../../static/js/e2e-keys.mjs';
import { Commit, History, wrapKey, openWrapped, hex } from '../../static/js/e2e-commit.mjs';
import { Epoch } from '../../static/js/e2e-epoch.mjs';
import { inviteKey, openIdentity } from '../../static/js/e2e-identity.mjs';
import { utf8, equal } from '../../static/js/e2e-core.mjs';
import { PgpVerifier } from '../../static/js/e2e-pgp.mjs';
import { openpgp } from '../../static/js/pgp.mjs';
import { prekeyCtx, sealItem, parseItem, openItem } from '../../static/js/e2e-mailbox.mjs';

export const DIR = new URL('../../testdata/e2e/', import.meta.url);

const KEYS = {
  kind: false, expect: false, producer: false, comment: false, room: false, user: false,
  member: true, keypackage: true, committer: false, epoch: false, prev: false, secret: false,
  ephemeral: false, wrap: true, commit: true, 'epoch id': false, message: true, 'invite secret': false,
  identity: true, 'pgp public': false, plaintext: false, item: true,
};

export function parseVector(name, text) {
  const v = { name, one: {}, many: {} };
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const i = line.indexOf(': ');
    if (i < 0) throw new Error(`${name}: line ${JSON.stringify(line.slice(0, 40))} is not key: value`);
    const k = line.slice(0, i);
    const val = line.slice(i + 2);
    if (!(k in KEYS)) throw new Error(`${name}: unknown header ${JSON.stringify(k)}`);
    if (KEYS[k]) (v.many[k] ??= []).push(val);
    else if (k in v.one) throw new Error(`${name}: header ${k} twice`);
    else v.one[k] = val;
  }
  return v;
}

export const readVector = (name) => parseVector(name, readFileSync(new URL(name, DIR), 'utf8'));

export function unhex(s) {
  if (!/^([0-9a-f]{2})*$/.test(s)) throw new Error(`bad hex ${s.slice(0, 16)}`);
  return Uint8Array.from(s.match(/../g) ?? [], (x) => parseInt(x, 16));
}

export const classOf = (e) => (e === null ? 'ok' : e?.code ?? `other: ${e?.message}`);

async function outcome(fn) {
  try {
    return { value: await fn(), cls: 'ok' };
  } catch (e) {
    return { cls: classOf(e), error: e };
  }
}

function check(cond, msg) {
  if (!cond) throw new Error(msg);
}

function checkBytes(what, got, want) {
  check(equal(got, want), `${what} differs:\n got ${hex(got.subarray(0, 24))}…\nwant ${hex(want.subarray(0, 24))}…`);
}

// members reads "member: id idSeed xSeed kemSeed [n]" lines into {id, sig, kp, priv}.
export async function members(v, kind, ctx) {
  const out = new Map();
  for (const l of v.many.member ?? []) {
    const f = l.split(' ');
    const id = Number(f[0]);
    const sig = await Identity.fromSeed(unhex(f[1]));
    const { kp, priv } = await KeyPackage.make(sig, kind, ctx, id, f[4] ? Number(f[4]) : 1, unhex(f[2]), unhex(f[3]));
    out.set(id, { id, sig, kp, priv });
  }
  return out;
}

function kemRandoms(v, ms) {
  const r = new Map();
  for (const l of v.many.wrap ?? []) {
    const f = l.split(' ');
    r.set(hex(ms.get(Number(f[0])).kp.ek), unhex(f[1]));
  }
  return (kp) => r.get(hex(kp.ek));
}

export async function runVector(v) {
  const run = { session: runSession, keypackage: runKeyPackage, 'open-commit': runOpenCommit, prekey: runOpenCommit, history: runHistory, identity: runIdentity, 'pgp-keypackage': runPgpKeyPackage, 'mail-item': runMailItem }[v.one.kind];
  check(run, `unknown kind ${v.one.kind}`);
  await run(v);
}

async function runSession(v) {
  const ctx = utf8(v.one.room);
  const ms = await members(v, 'keypackage', ctx);
  for (const l of v.many.keypackage) {
    const [id, h] = l.split(' ');
    const m = ms.get(Number(id));
    checkBytes(`key package of ${id}`, m.kp.raw, unhex(h));
    await KeyPackage.parse(unhex(h), 'keypackage', ctx, m.sig.verifier());
  }
  const committer = Number(v.one.committer);
  const to = [...ms.values()].filter((m) => m.id !== committer).map((m) => m.kp);
  const { commit } = await Commit.make(ms.get(committer).sig, {
    ctx, epoch: Number(v.one.epoch), prev: unhex(v.one.prev), committer, committerHash: await ms.get(committer).kp.hash(), to,
    secret: unhex(v.one.secret), ephemeralSeed: unhex(v.one.ephemeral), kemRandom: kemRandoms(v, ms),
  });
  const want = unhex(v.many.commit[0]);
  checkBytes('commit', commit.raw, want);
  const id = await commit.id(ctx);
  checkBytes('epoch id', id, unhex(v.one['epoch id']));
  const secret = unhex(v.one.secret);
  const ids = [...ms.keys()].sort((a, b) => a - b);
  const epochs = new Map();
  for (const mid of ids) {
    let got = secret;
    if (mid !== committer) {
      const pc = await Commit.parse(want, ctx, ms.get(committer).sig.verifier());
      got = await pc.open(ctx, ms.get(mid).kp, ms.get(mid).priv);
      await checkHybrid(v, ctx, pc, ms.get(mid));
    }
    checkBytes(`secret of ${mid}`, got, secret);
    epochs.set(mid, await Epoch.create(commit.epoch, id, got, ids));
  }
  const msgs = v.many.message.map((l) => {
    const f = l.split(' ');
    return { sender: Number(f[0]), n: Number(f[1]), result: f[2], pt: f[3] === '-' ? new Uint8Array(0) : unhex(f[3]), ct: unhex(f[4]) };
  });
  const seen = new Set();
  for (const m of [...msgs].sort((a, b) => a.n - b.n)) {
    if (!(m.result === 'ok' || m.result === 'dropped' || m.result.startsWith('missing=')) || seen.has(`${m.sender}/${m.n}`)) continue;
    seen.add(`${m.sender}/${m.n}`);
    checkBytes(`message ${m.sender}/${m.n}`, await epochs.get(m.sender).seal(m.sender, m.pt), m.ct);
  }
  for (const rid of ids) {
    for (const m of msgs) {
      if (m.sender === rid || m.result === 'dropped') continue;
      const o = await outcome(() => epochs.get(rid).open(m.sender, m.ct));
      const got = o.cls === 'ok' && o.value.missing > 0 ? `missing=${o.value.missing}` : o.cls;
      check(got === m.result, `member ${rid} opening ${m.sender}/${m.n}: got ${got}, want ${m.result}`);
      if (o.cls === 'ok') checkBytes('plaintext', o.value.plaintext, m.pt);
    }
  }
}

// checkHybrid: the vector's X25519 secret with a known (wrong) ML-KEM secret, or the reverse, must not
// open the wrap; both together must.
async function checkHybrid(v, ctx, c, m) {
  const l = (v.many.wrap ?? []).find((x) => Number(x.split(' ')[0]) === m.id);
  check(l, `no wrap line for member ${m.id}`);
  const f = l.split(' ');
  const dh = unhex(f[2]);
  const ss = unhex(f[3]);
  const i = c.find(m.id);
  const h = await m.kp.hash();
  const k = (a, b) => wrapKey(ctx, c.epoch, m.id, h, c.e, c.wraps[i].ct, a, b);
  await openWrapped(await k(dh, ss), c.wraps[i].wrapped, c.epoch);
  const known = new Uint8Array(32);
  check((await outcome(async () => openWrapped(await k(dh, known), c.wraps[i].wrapped, c.epoch))).cls === 'forged', 'X25519 alone opened the wrap');
  check((await outcome(async () => openWrapped(await k(known, ss), c.wraps[i].wrapped, c.epoch))).cls === 'forged', 'ML-KEM alone opened the wrap');
}

async function runKeyPackage(v) {
  const ctx = utf8(v.one.room);
  const ms = await members(v, 'keypackage', ctx);
  for (const l of v.many.keypackage) {
    const [id, h] = l.split(' ');
    const o = await outcome(() => KeyPackage.parse(unhex(h), 'keypackage', ctx, ms.get(Number(id)).sig.verifier()));
    check(o.cls === v.one.expect, `key package: got ${o.cls}, want ${v.one.expect}`);
  }
}

async function runOpenCommit(v) {
  const prekey = v.one.kind === 'prekey';
  const ctx = utf8(prekey ? `prekey:${v.one.user}` : v.one.room);
  const ms = await members(v, prekey ? 'prekey' : 'keypackage', ctx);
  const committer = ms.get(Number(v.one.committer));
  const self = [...ms.values()].find((m) => m !== committer);
  const commits = v.many.commit;
  for (let i = 0; i < commits.length; i++) {
    const o = await outcome(async () => (await Commit.parse(unhex(commits[i]), ctx, committer.sig.verifier())).open(ctx, self.kp, self.priv));
    if (prekey && o.cls === 'ok') {
      self.priv.dk = null; // a prekey's private half is deleted on first use
    }
    const want = i < commits.length - 1 ? 'ok' : v.one.expect;
    check(o.cls === want, `commit ${i}: got ${o.cls}, want ${want}`);
    if (o.cls === 'ok') checkBytes('secret', o.value, unhex(v.one.secret));
  }
}

async function runHistory(v) {
  const ctx = utf8(v.one.room);
  const ms = await members(v, 'keypackage', ctx);
  const h = new History();
  const commits = v.many.commit;
  for (let i = 0; i < commits.length; i++) {
    const [who, b] = commits[i].split(' ');
    const o = await outcome(async () => {
      const c = await Commit.parse(unhex(b), ctx, ms.get(Number(who)).sig.verifier());
      h.check(c);
      return c;
    });
    const want = i < commits.length - 1 ? 'ok' : v.one.expect;
    check(o.cls === want, `commit ${i}: got ${o.cls}, want ${want}`);
    if (o.cls === 'ok') await h.accept(ctx, o.value);
  }
}

async function runIdentity(v) {
  const ms = await members(v, 'keypackage', utf8(v.one.room));
  const key = await inviteKey(unhex(v.one['invite secret']), v.one.room);
  for (const l of v.many.identity) {
    const [from, b] = l.split(' ');
    const o = await outcome(() => openIdentity(key, v.one.room, Number(from), unhex(b)));
    check(o.cls === v.one.expect, `identity: got ${o.cls}, want ${v.one.expect}`);
    if (o.cls === 'ok') checkBytes('identity key', o.value.pub, ms.get(o.value.member).sig.pub);
  }
}

// runPgpKeyPackage checks key packages signed by an OpenPGP identity (dialogs) against its public key.
async function runPgpKeyPackage(v) {
  const key = await openpgp.readKey({ binaryKey: unhex(v.one['pgp public']) });
  for (const l of v.many.keypackage) {
    const [, h] = l.split(' ');
    const o = await outcome(() => KeyPackage.parse(unhex(h), 'keypackage', utf8(v.one.room), new PgpVerifier(key)));
    check(o.cls === v.one.expect, `key package: got ${o.cls}, want ${v.one.expect}`);
  }
}

// runMailItem rebuilds the first item from the inputs and compares bytes, then opens the items in order as
// the prekey's owner (member 2), deleting the prekey's seeds on first use; the last gives the expected result.
async function runMailItem(v) {
  const user = v.one.user;
  const ms = await members(v, 'prekey', prekeyCtx(user));
  const sender = ms.get(1);
  const owner = ms.get(2);
  const f = v.many.member.find((l) => l.startsWith('2 ')).split(' ');
  let seeds = { x: unhex(f[2]), kem: unhex(f[3]) };
  const pt = unhex(v.one.plaintext);
  const items = v.many.item;
  const got = await sealItem(sender.sig, user, owner.kp, pt, { secret: unhex(v.one.secret), ephemeralSeed: unhex(v.one.ephemeral), kemRandom: kemRandoms(v, ms) });
  checkBytes('item', got, unhex(items[0]));
  for (let i = 0; i < items.length; i++) {
    const o = await outcome(async () => {
      const item = await parseItem(unhex(items[i]), user, sender.sig.verifier());
      checkBytes('prekey hash', item.prekeyHash, await owner.kp.hash());
      return openItem(item, user, owner.kp, seeds, () => {
        seeds.x.fill(0);
        seeds.kem.fill(0);
        seeds = null;
      });
    });
    const want = i < items.length - 1 ? 'ok' : v.one.expect;
    check(o.cls === want, `item ${i}: got ${o.cls}, want ${want}${o.error ? ` (${o.error.message})` : ''}`);
    if (o.cls === 'ok') checkBytes('plaintext', o.value, pt);
  }
  check(seeds === null, 'the prekey was kept after use');
}
