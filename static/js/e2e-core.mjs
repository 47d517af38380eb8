// Module e2e-core holds the shared pieces of end-to-end protocol v2 (docs/e2e.md): labels, HKDF, AES-GCM, errors.
import { BUCKETS, padTo, unpadFrom } from './pad.mjs';

export const VERSION = 2;
export const KIND_IDENTITY = 0x10;
export const KIND_KEYPACKAGE = 0x11;
export const KIND_COMMIT = 0x12;
export const KIND_MESSAGE = 0x13;
export const X25519_SIZE = 32;
export const EK_SIZE = 1184;
export const CT_SIZE = 1088;
export const HASH_SIZE = 32;
export const WRAPPED_SIZE = 48;
export const MESSAGE_HEAD = 13;
export const MAX_MEMBERS = 50;
export const MAX_SKIP = 256;

const te = new TextEncoder();
const subtle = () => globalThis.crypto.subtle;

// E2EError carries a class in code, the same names the Go package's sentinels have in the vectors:
// forged, swapped, replayed, old-epoch, fork, missing, malformed, version, not-member.
export class E2EError extends Error {
  constructor(code, message) {
    super(`${message}: ${code}`);
    this.code = code;
  }
}

export const fail = (code, message) => {
  throw new E2EError(code, message);
};

export function concat(...parts) {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

export const utf8 = (s) => te.encode(s);

export function u32(n) {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n);
  return b;
}

export function u16(n) {
  return new Uint8Array([n >> 8, n & 0xff]);
}

export const getU32 = (b, o) => new DataView(b.buffer, b.byteOffset, b.byteLength).getUint32(o);
export const getU16 = (b, o) => (b[o] << 8) | b[o + 1];

export function equal(a, b) {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i] ^ b[i];
  return d === 0;
}

// label is "cleanrelay-e2e-v2/<name>\0" ‖ u16 len(ctx) ‖ ctx: the start of every signed, hashed or
// authenticated input.
export function label(name, ctx) {
  return concat(utf8(`cleanrelay-e2e-v2/${name}\0`), u16(ctx.length), ctx);
}

export async function sha256(...parts) {
  return new Uint8Array(await subtle().digest('SHA-256', concat(...parts)));
}

export async function hkdf(ikm, salt, info, n) {
  const k = await subtle().importKey('raw', ikm, 'HKDF', false, ['deriveBits']);
  return new Uint8Array(await subtle().deriveBits({ name: 'HKDF', hash: 'SHA-256', salt, info }, k, n * 8));
}

export async function gcmSeal(key, iv, pt, ad = new Uint8Array(0)) {
  const k = await subtle().importKey('raw', key, 'AES-GCM', false, ['encrypt']);
  return new Uint8Array(await subtle().encrypt({ name: 'AES-GCM', iv, additionalData: ad }, k, pt));
}

// gcmOpen returns the plaintext, or null when the tag does not verify.
export async function gcmOpen(key, iv, ct, ad = new Uint8Array(0)) {
  const k = await subtle().importKey('raw', key, 'AES-GCM', false, ['decrypt']);
  try {
    return new Uint8Array(await subtle().decrypt({ name: 'AES-GCM', iv, additionalData: ad }, k, ct));
  } catch {
    return null;
  }
}

export const pad = (data) => padTo(data, BUCKETS);

export function unpad(block) {
  try {
    return unpadFrom(block, BUCKETS);
  } catch (e) {
    throw new E2EError('malformed', e.message);
  }
}

export const INFO = Object.freeze({
  chain: utf8('cleanrelay-e2e-v2 chain'),
  sender: utf8('cleanrelay-e2e-v2 sender'),
  epoch: utf8('cleanrelay-e2e-v2 epoch'),
  wrap: utf8('cleanrelay-e2e-v2 wrap'),
  identity: utf8('cleanrelay-e2e-v2 identity'),
});

export function wipe(...bufs) {
  for (const b of bufs) b?.fill?.(0);
}
