// Module e2e-mailworker gives the crypto worker its operations for mailbox items (docs/e2e.md §9): it makes
// and keeps this account's one-time prekeys, seals an item with a contact's prekey, and opens an item with
// one of its own, deleting that prekey's private half on first use.
//
// The private halves live in the worker's memory and, for the next page, in a blob the page keeps in
// localStorage: an OpenPGP message encrypted to the account's own key, so only the unlocked account reads
// it. The blob is written again (without the used prekey) every time one is used.
import { openpgp, CONFIG } from './pgp.mjs';
import { PgpIdentity, PgpVerifier } from './e2e-pgp.mjs';
import { KeyPackage } from './e2e-keys.mjs';
import { makePrekey, encodeBundle, readPrekey, sealItem, parseItem, openItem } from './e2e-mailbox.mjs';
import { KIND_MAIL, encodePayload, b64u, unb64u } from './proto.mjs';
import { hex } from './e2e-commit.mjs';

// KEEP is how many private halves, at most, the worker keeps per prekey it publishes at once: those taken
// whose items have not been read yet stay, the oldest go first beyond it.
const KEEP = 3;

export function mailOps(state) {
  // mail: {user, next, keys: Map id -> {raw, x, kem, hash (hex)}}, after prekeysLoad.
  let mail = null;

  function requireMail() {
    if (!state.key) throw new Error('no key: unlock first');
    if (!mail) throw new Error('prekeys not loaded');
    return mail;
  }

  // blob encrypts the kept private halves to the account's own key.
  async function blob() {
    const keys = [...mail.keys.entries()].map(([id, k]) => ({ id, raw: b64u(k.raw), x: b64u(k.x), kem: b64u(k.kem) }));
    const json = new TextEncoder().encode(JSON.stringify({ v: 1, user: mail.user, next: mail.next, keys }));
    const message = await openpgp.createMessage({ binary: json });
    const out = await openpgp.encrypt({ message, encryptionKeys: state.key.toPublic(), format: 'binary', config: CONFIG });
    json.fill(0);
    return b64u(out);
  }

  async function addKey(id, raw, x, kem) {
    const kp = new KeyPackage(raw);
    mail.keys.set(id, { raw, x, kem, hash: hex(await kp.hash()) });
  }

  function forget(id) {
    const k = mail.keys.get(id);
    if (!k) return;
    k.x.fill(0);
    k.kem.fill(0);
    mail.keys.delete(id);
  }

  return {
    // prekeysForget drops the private halves from the worker's memory (logout); the stored blob stays.
    async prekeysForget() {
      if (mail) for (const id of [...mail.keys.keys()]) forget(id);
      mail = null;
      return true;
    },

    // prekeysLoad reads the stored blob of user (base64url, or null) into the worker. A blob that does not
    // open (another key, damaged) is dropped: its prekeys cannot be used anyway.
    async prekeysLoad({ user, stored }) {
      if (!state.key) throw new Error('no key: unlock first');
      if (mail) for (const id of [...mail.keys.keys()]) forget(id);
      mail = { user, next: 1, keys: new Map() };
      if (!stored) return { kept: 0 };
      try {
        const message = await openpgp.readMessage({ binaryMessage: unb64u(stored), config: CONFIG });
        const { data } = await openpgp.decrypt({ message, decryptionKeys: state.key, format: 'binary', config: CONFIG });
        const j = JSON.parse(new TextDecoder().decode(data));
        data.fill(0);
        if (j.v === 1 && j.user === user) {
          mail.next = j.next;
          for (const k of j.keys) await addKey(k.id, unb64u(k.raw), unb64u(k.x), unb64u(k.kem));
        }
      } catch {
        mail.keys.clear();
      }
      return { kept: mail.keys.size };
    },

    // prekeysTopUp makes prekeys so that, with the ids still at the relay (left), there are want; it returns
    // the bundle to publish (those left that it holds, and the new ones) and the blob to store.
    // below: publish nothing (bundle null) while at least that many of the prekeys left are this browser's;
    // another device's login replaces them with its own (docs/e2e.md §9).
    async prekeysTopUp({ left, want, below = Infinity }) {
      const m = requireMail();
      const at = left.filter((id) => m.keys.has(id));
      if (at.length >= below) return { bundle: null, stored: null, published: 0 };
      const identity = new PgpIdentity(state.key);
      const fresh = [];
      for (let i = at.length; i < want; i++) {
        const id = m.next++;
        const { kp, seeds } = await makePrekey(identity, m.user, id);
        await addKey(id, kp.raw, seeds.x, seeds.kem);
        fresh.push(id);
      }
      // Beyond KEEP × want, the oldest private halves go: their prekeys were taken long ago.
      const ids = [...m.keys.keys()].sort((a, b) => a - b);
      for (const id of ids.slice(0, Math.max(0, ids.length - KEEP * want))) if (!at.includes(id)) forget(id);
      const bundle = encodeBundle([...at, ...fresh].map((id) => m.keys.get(id).raw));
      return { bundle, stored: await blob(), published: at.length + fresh.length };
    },

    // mailSeal seals data (an envelope) for user to, the dialog peer pinned as member, with the prekey the
    // relay handed out (base64), checked against the pinned key. It returns the frame payload of kind 0x14.
    async mailSeal({ to, member, prekey, data }) {
      if (!state.key) throw new Error('no key: unlock first');
      const p = state.peers.get(member);
      if (!p) throw new Error('no pinned key for the contact');
      const t0 = performance.now();
      const kp = await readPrekey(unb64u(prekey), to, new PgpVerifier(p.key));
      const body = await sealItem(new PgpIdentity(state.key), to, kp, data);
      return { payload: encodePayload(KIND_MAIL, body), ms: performance.now() - t0 };
    },

    // mailOpen opens an item's body from the dialog peer pinned as member. It returns {data, stored} (the
    // envelope, and the blob without the used prekey), or {error: class, message, stored?}: replayed (the
    // prekey was used before, or this browser never held it), forged, malformed, version.
    async mailOpen({ member, body }) {
      const m = requireMail();
      const p = state.peers.get(member);
      if (!p) throw new Error('no pinned key for the contact');
      let used = false;
      let held = true;
      try {
        const item = await parseItem(body, m.user, new PgpVerifier(p.key));
        const h = hex(item.prekeyHash);
        const id = [...m.keys.entries()].find(([, k]) => k.hash === h)?.[0];
        const k = id === undefined ? null : m.keys.get(id);
        held = !!k;
        const kp = k ? new KeyPackage(k.raw) : { member: 2, hash: async () => item.prekeyHash };
        const seeds = k ? { x: k.x.slice(), kem: k.kem.slice() } : null;
        const data = await openItem(item, m.user, kp, seeds, () => {
          seeds.x.fill(0);
          seeds.kem.fill(0);
          forget(id);
          used = true;
        });
        return { data, stored: await blob() };
      } catch (e) {
        // elsewhere: this browser holds no private half of the item's prekey (another device of the account
        // published it, or this browser used it before): the page leaves the item at the relay.
        return { error: e.code ?? 'malformed', message: String(e.message), stored: used ? await blob() : null, elsewhere: !held && e.code === 'replayed' };
      }
    },
  };
}

