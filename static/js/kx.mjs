// Module kx binds an anonymous room's key exchange to the invite secret, so the relay cannot swap keys.
//
// Each member announces its public key sealed with AES-256-GCM under a key derived (HKDF-SHA-256)
// from the invite secret, which travels only in the link's fragment and never reaches the relay.
// The additional data names the room, so an announcement cannot be replayed into another room,
// and the plaintext names the announcing member id, which the receiver checks against the
// relay's stamp.

const enc = new TextEncoder();

export async function deriveKxKey(secret, roomId) {
  if (!(secret instanceof Uint8Array) || secret.length < 16) throw new Error('failed to derive key: secret too short');
  const base = await crypto.subtle.importKey('raw', secret, 'HKDF', false, ['deriveKey']);
  return crypto.subtle.deriveKey(
    { name: 'HKDF', hash: 'SHA-256', salt: enc.encode(`cleanrelay room ${roomId}`), info: enc.encode('cleanrelay key exchange v1') },
    base,
    { name: 'AES-GCM', length: 256 },
    false,
    ['encrypt', 'decrypt'],
  );
}

// seal returns iv(12) || AES-GCM(JSON(obj)).
export async function seal(key, roomId, obj) {
  const iv = crypto.getRandomValues(new Uint8Array(12));
  const ct = new Uint8Array(await crypto.subtle.encrypt(
    { name: 'AES-GCM', iv, additionalData: enc.encode(`cleanrelay-kx-v1 ${roomId}`) }, key, enc.encode(JSON.stringify(obj))));
  const out = new Uint8Array(12 + ct.length);
  out.set(iv);
  out.set(ct, 12);
  return out;
}

// open reverses seal; it throws "failed to open key announcement" for anything not sealed with
// this room's secret.
export async function open(key, roomId, bytes) {
  if (bytes.length < 12 + 16) throw new Error('failed to open key announcement: too short');
  let pt;
  try {
    pt = await crypto.subtle.decrypt(
      { name: 'AES-GCM', iv: bytes.subarray(0, 12), additionalData: enc.encode(`cleanrelay-kx-v1 ${roomId}`) }, key, bytes.subarray(12));
  } catch {
    throw new Error('failed to open key announcement: not made with this invite secret');
  }
  return JSON.parse(new TextDecoder().decode(pt));
}
