// Module e2e-identity seals an anonymous room member's v2 identity under the invite secret, so the relay cannot swap it.
import { VERSION, INFO, fail, concat, u32, u16, getU32, getU16, label, utf8, hkdf, gcmSeal, gcmOpen } from './e2e-core.mjs';

export async function inviteKey(secret, room) {
  if (!(secret instanceof Uint8Array) || secret.length < 16) throw new Error('failed to derive key: secret too short');
  return hkdf(secret, utf8(`cleanrelay room ${room}`), INFO.identity, 32);
}

// sealIdentity returns iv ‖ AES-256-GCM(VERSION ‖ u32 member ‖ Ed25519 public ‖ u16 len ‖ display).
export async function sealIdentity(key, room, { member, pub, display = new Uint8Array(0) }, iv = globalThis.crypto.getRandomValues(new Uint8Array(12))) {
  const pt = concat(Uint8Array.of(VERSION), u32(member), pub, u16(display.length), display);
  return concat(iv, await gcmSeal(key, iv, pt, label('identity', utf8(room))));
}

// openIdentity returns {member, pub, display}; forged for one not made with this invite secret or
// naming another member than the relay stamped.
export async function openIdentity(key, room, from, b) {
  if (b.length < 28) fail('malformed', 'failed to open identity: too short');
  const pt = await gcmOpen(key, b.subarray(0, 12), b.subarray(12), label('identity', utf8(room)));
  if (!pt) fail('forged', 'failed to open identity: not made with this invite secret');
  if (pt[0] !== VERSION) fail('version', `failed to open identity: version ${pt[0]}`);
  if (pt.length < 39 || pt.length !== 39 + getU16(pt, 37)) fail('malformed', 'failed to open identity: length');
  const id = { member: getU32(pt, 1), pub: pt.slice(5, 37), display: pt.slice(39) };
  if (id.member !== from) fail('forged', `failed to open identity: names member ${id.member} but came from ${from}`);
  return id;
}
