// Module e2e-mailbox seals and opens mailbox items with one-time prekeys (docs/e2e.md §9), and makes the
// prekeys: a message to a contact who is away gets forward secrecy once the contact has read it.
import { KeyPackage, x25519FromSeed, ml_kem768, wipePrivate } from './e2e-keys.mjs';
import { Commit } from './e2e-commit.mjs';
import { Epoch, readHeader } from './e2e-epoch.mjs';
import { HASH_SIZE, fail, concat, u16, getU16, utf8, equal } from './e2e-core.mjs';

export const SENDER = 1; // the sender of an item is member 1
export const OWNER = 2; // the prekey's owner member 2

export const prekeyCtx = (user) => utf8(`prekey:${user}`);

// makePrekey makes prekey id of user, signed by identity. It returns {kp, seeds}: seeds ({x: 32 bytes,
// kem: 64 bytes}) are the private half, which the owner keeps until the prekey's first use. The seeds may be
// given (test vectors); else they are fresh.
export async function makePrekey(identity, user, id, seeds = null) {
  const s = seeds ?? { x: globalThis.crypto.getRandomValues(new Uint8Array(32)), kem: globalThis.crypto.getRandomValues(new Uint8Array(64)) };
  const { kp, priv } = await KeyPackage.make(identity, 'prekey', prekeyCtx(user), OWNER, id, s.x, s.kem);
  wipePrivate(priv); // rebuilt from the seeds when an item comes
  return { kp, seeds: s };
}

// encodeBundle returns the bundle of the prekeys' bytes: u16 count ‖ count × (u16 len ‖ prekey).
export function encodeBundle(raws) {
  return concat(u16(raws.length), ...raws.flatMap((r) => [u16(r.length), r]));
}

// readPrekey checks a prekey handed out by the relay with the owner's pinned identity (verifier): version,
// malformed or forged.
export async function readPrekey(raw, user, verifier) {
  const kp = await KeyPackage.parse(raw, 'prekey', prekeyCtx(user), verifier);
  if (kp.member !== OWNER) fail('malformed', `failed to read prekey: member ${kp.member}`);
  return kp;
}

// sealItem seals plaintext for user with its prekey kp (from readPrekey), signed by identity as member 1.
// It returns the item's body: u16 len ‖ commit ‖ message (wrap it with proto.encodePayload(KIND_MAIL, …)).
// p: {secret, ephemeralSeed, kemRandom} for test vectors; fresh randomness otherwise.
export async function sealItem(identity, user, kp, plaintext, p = {}) {
  const ctx = prekeyCtx(user);
  const { commit, secret } = await Commit.make(identity, { ctx, epoch: 1, prev: new Uint8Array(HASH_SIZE), committer: SENDER, to: [kp], ...p });
  const epoch = await Epoch.create(1, await commit.id(ctx), secret, [SENDER, OWNER]);
  if (!p.secret) secret.fill(0);
  try {
    const msg = await epoch.seal(SENDER, plaintext);
    return concat(u16(commit.raw.length), commit.raw, msg);
  } finally {
    epoch.wipe();
  }
}

// parseItem splits an item's body and checks its commit's form and its signature with the sender's pinned
// identity. It returns {commit, message, prekeyHash}; errors version, malformed, forged.
export async function parseItem(body, user, verifier) {
  if (body.length < 2 || body.length < 2 + getU16(body, 0)) fail('malformed', 'failed to read mail item');
  const n = getU16(body, 0);
  const commit = await Commit.parse(body.subarray(2, 2 + n), prekeyCtx(user), verifier);
  const m = commit.members;
  if (commit.epoch !== 1 || !equal(commit.prev, new Uint8Array(HASH_SIZE)) || commit.committer !== SENDER || m.length !== 2
    || m[0].member !== SENDER || !equal(m[0].hash, new Uint8Array(HASH_SIZE)) || m[1].member !== OWNER) {
    fail('malformed', 'failed to read mail item: not a prekey commit');
  }
  return { commit, message: body.subarray(2 + n), prekeyHash: m[1].hash };
}

// openItem opens a parsed item with the prekey it names: kp and seeds (null when deleted: replayed). It calls
// used() once the commit has opened, before the message is read: the caller deletes the seeds there, so that
// a prekey serves one item whatever follows. Errors: replayed, swapped, forged, malformed.
export async function openItem(item, user, kp, seeds, used = () => {}) {
  const ctx = prekeyCtx(user);
  let priv = null;
  if (seeds) {
    const { secretKey: dk } = ml_kem768.keygen(seeds.kem);
    priv = { x: (await x25519FromSeed(seeds.x)).priv, dk };
  }
  let secret;
  try {
    secret = await item.commit.open(ctx, kp, priv);
  } finally {
    wipePrivate(priv);
  }
  await used();
  const epoch = await Epoch.create(1, await item.commit.id(ctx), secret, [SENDER, OWNER]);
  secret.fill(0);
  try {
    if (readHeader(item.message).n !== 0) fail('malformed', 'failed to open mail item: not message 0');
    return (await epoch.open(SENDER, item.message)).plaintext;
  } finally {
    epoch.wipe();
  }
}
