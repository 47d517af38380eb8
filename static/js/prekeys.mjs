// Module prekeys publishes this account's one-time prekeys for the mailbox (docs/accounts.md §14,
// docs/e2e.md §9), keeps the worker's encrypted store of their private halves in localStorage, and takes a
// contact's prekey for a message that goes to the mailbox.
import { call, APIError } from './api.mjs';
import { coded } from './conn.mjs';

// TOP_UP_BELOW: fewer prekeys left at the relay than this, and the page publishes a full bundle again.
const TOP_UP_BELOW = 16;

const storeName = (user) => `cleanrelay.prekeys.${user}`;

let crypto = null; // the crypto worker's client, once published
let user = null;
let busy = null;

// save keeps the worker's blob of private halves (or forgets it).
export function save(stored) {
  if (!user || stored == null) return;
  try {
    localStorage.setItem(storeName(user), stored);
  } catch {
    // storage full or off: the prekeys of this page still work; the next page publishes new ones
  }
}

// start loads the account's stored private halves into the worker after unlock and publishes prekeys.
export async function start(cryptoClient, username) {
  crypto = cryptoClient;
  user = username;
  let stored = null;
  try {
    stored = localStorage.getItem(storeName(user));
  } catch {
    stored = null;
  }
  await crypto.call('prekeysLoad', { user, stored });
  return topUp();
}

// topUp publishes a new bundle when fewer than TOP_UP_BELOW prekeys are left at the relay. It resolves to
// the number published (0 when none was needed), or null when the relay keeps no prekeys or cannot be
// reached (offline messages to this account then wait in their senders' outboxes).
export function topUp() {
  if (!crypto) return Promise.resolve(null);
  busy ??= (async () => {
    try {
      const left = await call('GET', 'prekeys');
      // Counted are the prekeys this browser holds the private halves of: after another device of the account
      // logged in, the relay holds that device's, and this browser publishes its own again (the last device
      // to log in reads what waits from then on).
      const r = await crypto.call('prekeysTopUp', { left: left.ids, want: left.max, below: Math.min(TOP_UP_BELOW, left.max) });
      if (!r.bundle) return 0;
      save(r.stored);
      const res = await fetch('/api/prekeys', { method: 'PUT', credentials: 'same-origin', headers: { 'Content-Type': 'application/octet-stream' }, body: r.bundle });
      return res.ok ? r.published : null;
    } catch {
      return null;
    } finally {
      busy = null;
    }
  })();
  return busy;
}

// take takes one prekey of peer for a message to the mailbox: {id, fingerprint, prekey (base64)}. When none
// can be had it rejects with code 'waiting_contact' (the message waits in the outbox until the contact is
// online or publishes more); 'network' when the relay cannot be reached.
export async function take(peer) {
  try {
    const r = await call('POST', `prekeys/${encodeURIComponent(peer)}/take`);
    return { ...r, prekey: r.prekey.replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '') };
  } catch (e) {
    if (e instanceof APIError && ['no_prekeys', 'prekeys_held', 'prekeys_off'].includes(e.code)) {
      throw coded(`waiting for ${peer}: ${e.message}`, 'waiting_contact');
    }
    throw e;
  }
}

// forget drops the page's state at logout (the stored blob stays: only the account's key opens it).
export async function forget() {
  const c = crypto;
  crypto = null;
  user = null;
  await c?.call('prekeysForget').catch(() => {});
}
