// Module fs-attack is what the forward-secrecy tests try against recorded protocol v2 frames: every secret left
// in a browser after a session, used as a key, an epoch secret or a chain key.
import { concat, u32, hkdf, gcmOpen, INFO, unpad } from '../../static/js/e2e-core.mjs';
import { decodeEnvelope } from '../../static/js/proto.mjs';

export const unhex = (s) => Uint8Array.from(s.match(/../g), (x) => parseInt(x, 16));

// leftovers returns everything a seized browser profile still holds for this origin: web storage,
// cookies, IndexedDB and Cache Storage names, and the page's own state (no key objects: JS cannot
// reach into the worker, which the room ended).
export async function leftovers(page) {
  return page.evaluate(async () => {
    const dump = (s) => Object.fromEntries(Object.keys(s).map((k) => [k, s.getItem(k)]));
    return {
      local: dump(localStorage),
      session: dump(sessionStorage),
      cookie: document.cookie,
      idb: indexedDB.databases ? (await indexedDB.databases()).map((d) => d.name) : [],
      caches: globalThis.caches ? await caches.keys().catch(() => []) : [],
    };
  });
}

// candidates turns leftovers into every byte string an attacker would try as a key or secret.
export function candidates(values) {
  const out = [];
  for (const v of values) {
    const s = typeof v === 'string' ? v : Buffer.from(v).toString('latin1');
    out.push(Buffer.from(s, 'latin1'));
    for (const tok of s.match(/[A-Za-z0-9+/_=-]{22,}/g) ?? []) {
      out.push(Buffer.from(tok, 'base64'), Buffer.from(tok, 'base64url'));
      if (/^[0-9a-f]+$/i.test(tok) && tok.length % 2 === 0) out.push(Buffer.from(tok, 'hex'));
    }
  }
  return out.filter((b) => b.length >= 16).map((b) => new Uint8Array(b));
}

// tryOpen opens a v2 message frame body with key ‖ nonce kn and the epoch id; null when it fails.
export async function tryOpen(body, kn, epochId) {
  const pt = await gcmOpen(kn.subarray(0, 32), kn.subarray(32, 44), body.subarray(13), concat(body.subarray(0, 13), epochId));
  return pt ? decodeEnvelope(unpad(pt)) : null;
}

// asSecret treats c as an epoch secret (or an epoch's chain key) and derives the key of message n.
export async function keyFrom(c, epochId, sender, n, asChain) {
  let ck = asChain ? c.subarray(0, 32) : await hkdf(await hkdf(c, epochId, INFO.epoch, 32), new Uint8Array(0), concat(INFO.sender, u32(sender)), 32);
  for (let i = 0; i <= n; i++) {
    const out = await hkdf(ck, new Uint8Array(0), INFO.chain, 76);
    if (i === n) return out.subarray(32);
    ck = out.subarray(0, 32);
  }
  return null;
}

