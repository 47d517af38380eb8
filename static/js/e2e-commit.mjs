// Module e2e-commit builds, checks and opens v2 commits: an epoch secret wrapped to each member under X25519 and ML-KEM-768.
import { ml_kem768, x25519, x25519FromSeed, x25519Generate } from './e2e-keys.mjs';
import {
  VERSION, HASH_SIZE, X25519_SIZE, CT_SIZE, WRAPPED_SIZE, MAX_MEMBERS, INFO,
  fail, concat, u32, u16, getU32, getU16, label, sha256, hkdf, gcmSeal, gcmOpen, equal,
} from './e2e-core.mjs';

// wrapKey derives the 44 bytes (AES key ‖ nonce) that wrap the epoch secret for one member; it needs
// both the X25519 secret dh and the ML-KEM secret ss.
export async function wrapKey(ctx, epoch, member, kpHash, e, ct, dh, ss) {
  const salt = await sha256(label('wrap', ctx), u32(epoch), u32(member), kpHash, e, ct);
  return hkdf(concat(dh, ss), salt, INFO.wrap, 44);
}

// openWrapped returns the epoch secret, or throws forged.
export async function openWrapped(k, wrapped, epoch) {
  const s = await gcmOpen(k.subarray(0, 32), k.subarray(32), wrapped);
  if (!s) fail('forged', `failed to open commit of epoch ${epoch}`);
  return s;
}

// Commit: VERSION ‖ u32 epoch ‖ prev(32) ‖ u32 committer ‖ u8 n ‖ n × (u32 member ‖ hash(32)) ‖ E(32)
// ‖ (n−1) × (ML-KEM ct(1088) ‖ wrapped(48)) ‖ u16 siglen ‖ sig.
export class Commit {
  // make builds and signs a commit. p: {ctx, epoch, prev, committer, committerHash, to: [KeyPackage],
  // secret?, ephemeralSeed?, kemRandom?: (kp) => 32 bytes}; the optional inputs are for test vectors.
  static async make(id, p) {
    if (p.to.length + 1 > MAX_MEMBERS) fail('malformed', `failed to commit: ${p.to.length + 1} members is over ${MAX_MEMBERS}`);
    const secret = p.secret ?? globalThis.crypto.getRandomValues(new Uint8Array(32));
    const e = p.ephemeralSeed ? await x25519FromSeed(p.ephemeralSeed) : await x25519Generate();
    const to = [...p.to].sort((a, b) => a.member - b.member);
    const members = [{ member: p.committer, hash: p.committerHash ?? new Uint8Array(HASH_SIZE) }];
    for (const kp of to) members.push({ member: kp.member, hash: await kp.hash() });
    members.sort((a, b) => a.member - b.member);
    for (let i = 1; i < members.length; i++) {
      if (members[i].member === members[i - 1].member) fail('malformed', `failed to commit: member ${members[i].member} twice`);
    }
    const wraps = [];
    for (const kp of to) {
      const dh = await x25519(e.priv, kp.x);
      const { cipherText: ct, sharedSecret: ss } = ml_kem768.encapsulate(kp.ek, p.kemRandom?.(kp));
      const k = await wrapKey(p.ctx, p.epoch, kp.member, await kp.hash(), e.pub, ct, dh, ss);
      wraps.push(ct, await gcmSeal(k.subarray(0, 32), k.subarray(32), secret));
      dh.fill(0);
      ss.fill(0);
    }
    const body = concat(Uint8Array.of(VERSION), u32(p.epoch), p.prev ?? new Uint8Array(HASH_SIZE), u32(p.committer), Uint8Array.of(members.length),
      ...members.flatMap((m) => [u32(m.member), m.hash]), e.pub, ...wraps);
    const sig = await id.sign(concat(label('commit', p.ctx), body));
    return { commit: Commit.decode(concat(body, u16(sig.length), sig)), secret };
  }

  // decode reads a commit's fields without checking the signature (parse does both).
  static decode(raw) {
    if (raw.length < 1 || raw[0] !== VERSION) fail('version', 'failed to read commit');
    const head = 1 + 4 + HASH_SIZE + 4 + 1;
    if (raw.length < head) fail('malformed', 'failed to read commit: too short');
    const c = new Commit();
    c.raw = raw;
    c.epoch = getU32(raw, 1);
    c.prev = raw.subarray(5, 5 + HASH_SIZE);
    c.committer = getU32(raw, 5 + HASH_SIZE);
    const n = raw[head - 1];
    if (n < 1 || n > MAX_MEMBERS) fail('malformed', `failed to read commit: ${n} members`);
    c.end = head + n * (4 + HASH_SIZE) + X25519_SIZE + (n - 1) * (CT_SIZE + WRAPPED_SIZE);
    if (raw.length < c.end + 2 || raw.length !== c.end + 2 + getU16(raw, c.end)) fail('malformed', 'failed to read commit: length');
    let o = head;
    c.members = [];
    for (let i = 0; i < n; i++, o += 4 + HASH_SIZE) {
      const m = { member: getU32(raw, o), hash: raw.subarray(o + 4, o + 4 + HASH_SIZE) };
      if (i > 0 && m.member <= c.members[i - 1].member) fail('malformed', 'failed to read commit: members not ascending');
      c.members.push(m);
    }
    if (!c.members.some((m) => m.member === c.committer)) fail('malformed', 'failed to read commit: committer not listed');
    c.e = raw.subarray(o, o + X25519_SIZE);
    o += X25519_SIZE;
    c.wraps = [];
    for (let i = 0; i < n - 1; i++, o += CT_SIZE + WRAPPED_SIZE) {
      c.wraps.push({ ct: raw.subarray(o, o + CT_SIZE), wrapped: raw.subarray(o + CT_SIZE, o + CT_SIZE + WRAPPED_SIZE) });
    }
    c.sig = raw.subarray(c.end + 2);
    return c;
  }

  // parse decodes a commit and checks the committer's signature: version, malformed or forged.
  static async parse(raw, ctx, verifier) {
    const c = Commit.decode(raw);
    if (!(await verifier.verify(concat(label('commit', ctx), raw.subarray(0, c.end)), c.sig))) {
      fail('forged', `failed to read commit of epoch ${c.epoch}`);
    }
    return c;
  }

  async id(ctx) {
    this.idCache ??= await sha256(label('epoch', ctx), this.raw);
    return this.idCache;
  }

  // find returns member's index among the wrapped secrets, or −1.
  find(member) {
    let i = 0;
    for (const m of this.members) {
      if (m.member === this.committer) continue;
      if (m.member === member) return i;
      i++;
    }
    return -1;
  }

  entry(member) {
    return this.members.find((m) => m.member === member);
  }

  // open unwraps the epoch secret for the holder of kp: not-member, swapped (the commit names another
  // key package of ours), replayed (the private half is already deleted) or forged.
  async open(ctx, kp, priv) {
    const i = this.find(kp.member);
    if (i < 0) fail('not-member', `failed to open commit of epoch ${this.epoch}`);
    const entry = this.entry(kp.member);
    if (!equal(entry.hash, await kp.hash())) fail('swapped', `failed to open commit of epoch ${this.epoch}: it names a key package of member ${kp.member} that is not ours`);
    if (!priv?.dk) fail('replayed', `failed to open commit of epoch ${this.epoch}: its key package was used before`);
    const dh = await x25519(priv.x, this.e);
    const ss = ml_kem768.decapsulate(this.wraps[i].ct, priv.dk);
    const k = await wrapKey(ctx, this.epoch, kp.member, entry.hash, this.e, this.wraps[i].ct, dh, ss);
    dh.fill(0);
    ss.fill(0);
    return openWrapped(k, this.wraps[i].wrapped, this.epoch);
  }
}

// History follows the chain of accepted commits of a room (docs/e2e.md §6.3).
export class History {
  constructor() {
    this.number = 0;
    this.id = new Uint8Array(HASH_SIZE);
    this.used = new Set(); // hex of key package hashes named by accepted commits
  }

  // check throws old-epoch, fork or replayed for a commit that may not come next.
  check(c) {
    if (this.number !== 0 && c.epoch <= this.number) fail('old-epoch', `commit for epoch ${c.epoch}, now at ${this.number}`);
    if (this.number !== 0 && (c.epoch !== this.number + 1 || !equal(c.prev, this.id))) fail('fork', `commit for epoch ${c.epoch}`);
    for (const m of c.members) {
      if (m.member !== c.committer && this.used.has(hex(m.hash))) fail('replayed', `commit for epoch ${c.epoch} reuses a key package of member ${m.member}`);
    }
  }

  async accept(ctx, c) {
    for (const m of c.members) if (m.member !== c.committer) this.used.add(hex(m.hash));
    this.number = c.epoch;
    this.id = await c.id(ctx);
  }
}

export function hex(b) {
  let s = '';
  for (const x of b) s += x.toString(16).padStart(2, '0');
  return s;
}
