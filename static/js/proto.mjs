// Module proto encodes and decodes the relay wire protocol v1 (docs/protocol.md) and the client's
// own payload layout inside frames (docs/client.md).
import { FRAME_BUCKETS, padTo, unpadFrom } from './pad.mjs';

export const SUBPROTOCOL = 'cleanrelay.v1';
export const DELIVER_HEADER = 13; // ch(1) + seq(8) + from(4)
export const SEND_HEADER = 1; // ch(1)
export const MAX_CONTROL = 4096; // the largest text (control) message a client may send
export const MAX_SEQ = Number.MAX_SAFE_INTEGER; // the largest room sequence number a client holds exactly

// Payload kinds: what a frame payload carries (the byte after the length field of a padded payload).
export const KIND_KEY = 0x01; // key announcement, AES-GCM under the invite secret
export const KIND_PGP = 0x02; // a complete binary OpenPGP message
// Protocol v2 kinds (docs/e2e.md §3): identity, key package, commit, message.
export const KINDS_V2 = Object.freeze([0x10, 0x11, 0x12, 0x13]);
// KIND_MAIL is a mailbox item sealed with a one-time prekey (docs/e2e.md §9); it never goes into a room.
export const KIND_MAIL = 0x14;

// PADDED is the first byte of every frame payload this client sends (docs/client.md):
//   0x03 ‖ u32 big-endian n ‖ kind(1) ‖ body(n−1) ‖ zeros up to one of FRAME_BUCKETS.
// The kind sits inside the padded part, so the relay sees one constant byte and a size from a small
// fixed set. Payloads that start with a bare kind (0x01, 0x02: clients before the frame padding)
// are still read.
export const PADDED = 0x03;
const PADDED_LEAD = 1; // the PADDED byte before the length field

// encodeSend returns the binary message that sends payload into channel ch.
export function encodeSend(ch, payload) {
  if (!Number.isInteger(ch) || ch < 1 || ch > 255) throw new RangeError(`failed to encode frame: bad channel ${ch}`);
  if (!(payload instanceof Uint8Array) || payload.length < 1) throw new TypeError('failed to encode frame: empty payload');
  const out = new Uint8Array(1 + payload.length);
  out[0] = ch;
  out.set(payload, 1);
  return out;
}

// decodeDeliver parses a relay → client binary message into {ch, seq, from, payload}.
export function decodeDeliver(buf) {
  const b = buf instanceof Uint8Array ? buf : new Uint8Array(buf);
  if (b.length <= DELIVER_HEADER) throw new Error(`failed to decode frame: ${b.length} bytes is too short`);
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const seq = Number(v.getBigUint64(1));
  if (!Number.isSafeInteger(seq) || seq > MAX_SEQ) throw new Error('failed to decode frame: sequence number out of range');
  return { ch: b[0], seq, from: v.getUint32(9), payload: b.subarray(DELIVER_HEADER) };
}

// encodePayload returns the frame payload that carries body as kind, padded to a frame bucket. It
// throws a RangeError when body does not fit the largest bucket.
export function encodePayload(kind, body) {
  if (kind !== KIND_KEY && kind !== KIND_PGP && kind !== KIND_MAIL && !KINDS_V2.includes(kind)) throw new RangeError(`failed to encode payload: unknown kind ${kind}`);
  if (!(body instanceof Uint8Array)) throw new TypeError('failed to encode payload: body must be a Uint8Array');
  const inner = new Uint8Array(1 + body.length);
  inner[0] = kind;
  inner.set(body, 1);
  let out;
  try {
    out = padTo(inner, FRAME_BUCKETS, PADDED_LEAD);
  } catch (e) {
    throw new RangeError(`failed to encode payload: ${e.message}`);
  }
  out[0] = PADDED;
  return out;
}

// decodePayload reads a frame payload into {kind, body, padded}; body is a view into payload. It
// throws for a padded payload whose size is not a frame bucket, whose length overruns it or whose
// padding is not zero, and for an unknown first byte: the caller drops that one frame.
export function decodePayload(payload) {
  if (!(payload instanceof Uint8Array) || payload.length < 1) throw new Error('failed to decode payload: empty');
  if (payload[0] === KIND_KEY || payload[0] === KIND_PGP) return { kind: payload[0], body: payload.subarray(1), padded: false };
  if (payload[0] !== PADDED) throw new Error(`failed to decode payload: unknown first byte ${payload[0]}`);
  let inner;
  try {
    inner = unpadFrom(payload, FRAME_BUCKETS, PADDED_LEAD);
  } catch (e) {
    throw new Error(`failed to decode payload: ${e.message}`);
  }
  if (inner.length < 1) throw new Error('failed to decode payload: no kind inside the padding');
  return { kind: inner[0], body: inner.subarray(1), padded: true };
}

// parseControl parses a relay → client text message and checks the fields this client relies on.
export function parseControl(text) {
  let m;
  try {
    m = JSON.parse(text);
  } catch (e) {
    throw new Error(`failed to parse control message: ${e.message}`);
  }
  if (m === null || typeof m !== 'object' || Array.isArray(m) || typeof m.t !== 'string') {
    throw new Error('failed to parse control message: not an object with a string "t"');
  }
  const needs = {
    hello: ['v'],
    joined: ['ch', 'room', 'member', 'resume', 'seq', 'members'],
    resumed: ['ch', 'room', 'member', 'seq', 'in', 'members'],
    presence: ['ch', 'seq', 'member', 'event'],
    lost: ['ch', 'from', 'to'],
    closed: ['ch', 'reason'],
    left: ['ch'],
    error: ['code'],
  }[m.t];
  for (const f of needs || []) {
    if (!(f in m)) throw new Error(`failed to parse control message: ${m.t} lacks "${f}"`);
  }
  return m;
}

// Envelope: the plaintext inside an OpenPGP message, before padding.
//   u16 big-endian header length h, h bytes of UTF-8 JSON header, then the body bytes.
// The header says what the message is ({"k":"msg",...}, {"k":"file",...}); the body carries file bytes.

export function encodeEnvelope(header, body = new Uint8Array(0)) {
  const h = new TextEncoder().encode(JSON.stringify(header));
  if (h.length > 0xffff) throw new RangeError('failed to encode envelope: header too large');
  const out = new Uint8Array(2 + h.length + body.length);
  new DataView(out.buffer).setUint16(0, h.length);
  out.set(h, 2);
  out.set(body, 2 + h.length);
  return out;
}

export function decodeEnvelope(bytes) {
  if (bytes.length < 2) throw new Error('failed to decode envelope: too short');
  const n = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint16(0);
  if (2 + n > bytes.length) throw new Error('failed to decode envelope: header overruns');
  let header;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(2, 2 + n)));
  } catch (e) {
    throw new Error(`failed to decode envelope: ${e.message}`);
  }
  if (header === null || typeof header !== 'object' || typeof header.k !== 'string') {
    throw new Error('failed to decode envelope: header lacks a kind');
  }
  return { header, body: bytes.subarray(2 + n) };
}

// b64u encodes bytes as base64url without padding; unb64u decodes it.
export function b64u(bytes) {
  let s = '';
  for (let i = 0; i < bytes.length; i++) s += String.fromCharCode(bytes[i]);
  return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

export function unb64u(s) {
  if (typeof s !== 'string' || !/^[A-Za-z0-9_-]*$/.test(s)) throw new Error('failed to decode base64url: bad characters');
  const b = atob(s.replace(/-/g, '+').replace(/_/g, '/') + '='.repeat((4 - (s.length % 4)) % 4));
  const out = new Uint8Array(b.length);
  for (let i = 0; i < b.length; i++) out[i] = b.charCodeAt(i);
  return out;
}

// parseInvite reads an invite fragment "#r=ROOM&c=CAP&k=SECRET" and checks each part's shape.
export function parseInvite(hash) {
  const p = new URLSearchParams(String(hash).replace(/^#/, ''));
  const r = p.get('r');
  const c = p.get('c');
  const k = p.get('k');
  if (!r || !c || !k) return null;
  if (!/^[A-Za-z0-9_-]{22}$/.test(r)) throw new Error('invite link: bad room id');
  if (!/^[A-Za-z0-9_-]{43}$/.test(c)) throw new Error('invite link: bad capability');
  if (!/^[A-Za-z0-9_-]{43}$/.test(k)) throw new Error('invite link: bad secret');
  return { room: r, cap: c, secret: k };
}

export function inviteFragment({ room, cap, secret }) {
  return `#r=${room}&c=${cap}&k=${secret}`;
}
