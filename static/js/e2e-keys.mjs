// Module e2e-keys makes and checks v2 identities (Ed25519) and key packages (X25519 + ML-KEM-768).
import { ml_kem768 } from '../vendor/noble/post-quantum/ml-kem.js';
import { VERSION, X25519_SIZE, EK_SIZE, fail, concat, u32, u16, getU32, getU16, label, utf8, sha256 } from './e2e-core.mjs';

export { ml_kem768 };

const subtle = () => globalThis.crypto.subtle;
const PKCS8 = {
  X25519: Uint8Array.from([0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x04, 0x22, 0x04, 0x20]),
  Ed25519: Uint8Array.from([0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20]),
};

function fromB64u(s) {
  const b = atob(s.replace(/-/g, '+').replace(/_/g, '/') + '='.repeat((4 - (s.length % 4)) % 4));
  return Uint8Array.from(b, (c) => c.charCodeAt(0));
}

// okpFromSeed imports a 32-byte X25519 or Ed25519 private key; it returns {priv, pub} (pub raw bytes).
async function okpFromSeed(name, seed, usages) {
  const priv = await subtle().importKey('pkcs8', concat(PKCS8[name], seed), { name }, true, usages);
  const pub = fromB64u((await subtle().exportKey('jwk', priv)).x);
  return { priv: await subtle().importKey('pkcs8', concat(PKCS8[name], seed), { name }, false, usages), pub };
}

async function okpGenerate(name, usages) {
  const k = await subtle().generateKey({ name }, false, usages);
  return { priv: k.privateKey, pub: new Uint8Array(await subtle().exportKey('raw', k.publicKey)) };
}

// Identity is a member's Ed25519 signing key (the invite-bound one-time key of an anonymous room).
export class Identity {
  static async fromSeed(seed) {
    return Object.assign(new Identity(), await okpFromSeed('Ed25519', seed, ['sign']));
  }

  static async generate() {
    return Object.assign(new Identity(), await okpGenerate('Ed25519', ['sign', 'verify']));
  }

  async sign(msg) {
    return new Uint8Array(await subtle().sign({ name: 'Ed25519' }, this.priv, msg));
  }

  verifier() {
    return new Ed25519Public(this.pub);
  }
}

// Ed25519Public verifies an identity's signatures.
export class Ed25519Public {
  constructor(pub) {
    this.pub = pub;
  }

  async verify(msg, sig) {
    if (this.pub.length !== 32 || sig.length !== 64) return false;
    try {
      const k = await subtle().importKey('raw', this.pub, { name: 'Ed25519' }, false, ['verify']);
      return await subtle().verify({ name: 'Ed25519' }, k, sig, msg);
    } catch {
      return false;
    }
  }
}

// x25519 returns the 32-byte shared secret of priv (a CryptoKey) and the raw public key pub.
export async function x25519(priv, pub) {
  const k = await subtle().importKey('raw', pub, { name: 'X25519' }, false, []);
  return new Uint8Array(await subtle().deriveBits({ name: 'X25519', public: k }, priv, 256));
}

export async function x25519FromSeed(seed) {
  return okpFromSeed('X25519', seed, ['deriveBits']);
}

export async function x25519Generate() {
  return okpGenerate('X25519', ['deriveBits']);
}

const KP_BODY = 1 + 4 + 4 + X25519_SIZE + EK_SIZE;

// KeyPackage: VERSION ‖ u32 member ‖ u32 n ‖ X25519 public ‖ ML-KEM-768 ek ‖ u16 siglen ‖ sig, where
// sig signs label(kind, ctx) ‖ everything before siglen. A prekey is the same under kind "prekey".
export class KeyPackage {
  constructor(raw) {
    this.raw = raw;
    this.member = getU32(raw, 1);
    this.n = getU32(raw, 5);
    this.x = raw.subarray(9, 9 + X25519_SIZE);
    this.ek = raw.subarray(9 + X25519_SIZE, KP_BODY);
    this.sig = raw.subarray(KP_BODY + 2);
  }

  async hash() {
    this.h ??= await sha256(this.raw);
    return this.h;
  }

  // make returns {kp, priv}; seeds (32-byte X25519, 64-byte ML-KEM) are for test vectors, fresh
  // randomness otherwise. priv is {x: CryptoKey, dk: Uint8Array}; wipePrivate deletes it.
  // kem, when given, is an ML-KEM key pair made ahead of time ({publicKey, secretKey}).
  static async make(id, kind, ctx, member, n, xSeed = null, kemSeed = null, kem = null) {
    const x = xSeed ? await x25519FromSeed(xSeed) : await x25519Generate();
    const { publicKey: ek, secretKey: dk } = kem ?? ml_kem768.keygen(kemSeed ?? globalThis.crypto.getRandomValues(new Uint8Array(64)));
    const body = concat(Uint8Array.of(VERSION), u32(member), u32(n), x.pub, ek);
    const sig = await id.sign(concat(label(kind, ctx), body));
    return { kp: new KeyPackage(concat(body, u16(sig.length), sig)), priv: { x: x.priv, dk } };
  }

  // parse decodes and verifies a key package with the member's identity; it throws E2EError version,
  // malformed or forged.
  static async parse(raw, kind, ctx, verifier) {
    if (raw.length < 1 || raw[0] !== VERSION) fail('version', 'failed to read key package');
    if (raw.length < KP_BODY + 2 || raw.length !== KP_BODY + 2 + getU16(raw, KP_BODY)) fail('malformed', 'failed to read key package: length');
    const kp = new KeyPackage(raw);
    if (!(await verifier.verify(concat(label(kind, ctx), raw.subarray(0, KP_BODY)), kp.sig))) {
      fail('forged', `failed to read key package of member ${kp.member}`);
    }
    return kp;
  }
}

export function wipePrivate(priv) {
  if (!priv) return;
  priv.dk?.fill(0);
  priv.dk = null;
  priv.x = null;
}

export const ctxOf = (s) => (typeof s === 'string' ? utf8(s) : s);
