// Module mailbox calls the relay's mailbox for dialogs (docs/accounts.md §Mailbox) and keeps the unread counts
// that the dialogs list and the tab's title show.
import { call, APIError } from './api.mjs';

const enc = encodeURIComponent;

export const summary = () => call('GET', 'mailbox');
export const fetchFrom = (from) => call('GET', `mailbox/${enc(from)}`);
export const ack = (from, ids) => call('POST', `mailbox/${enc(from)}/ack`, { ids });

// put leaves one frame payload (ciphertext for the key with fingerprint fp) for user `to`. quiet marks a
// file chunk or a receipt, which is no unread message of its own. It rejects with an APIError: code
// 'network' when the relay cannot be reached, else the relay's code (mailbox_full, key_changed, ...).
export async function put(to, fp, payload, { ttl = 0, quiet = false } = {}) {
  const q = `fp=${enc(fp)}${ttl ? `&ttl=${ttl}` : ''}${quiet ? '&quiet=1' : ''}`;
  let res;
  try {
    res = await fetch(`/api/mailbox/${enc(to)}?${q}`, {
      method: 'POST', credentials: 'same-origin', headers: { 'Content-Type': 'application/octet-stream' }, body: payload,
    });
  } catch (e) {
    throw new APIError(0, 'network', `failed to reach the relay: ${e.message}`);
  }
  let data = null;
  try {
    data = await res.json();
  } catch {
    data = null;
  }
  if (!res.ok) {
    // A proxy or a relay that is going away answers without the API's JSON: that is "unreachable" too.
    const code = data?.error || (res.status >= 500 ? 'network' : `http_${res.status}`);
    throw new APIError(res.status, code, data?.msg || `HTTP ${res.status}`);
  }
  return data;
}

// fromB64 decodes a standard base64 string to bytes.
export function fromB64(s) {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

// Unread holds the unread count of each dialog peer, from the relay's summary and its `mail` notices, and
// shows the total in the tab's title while there is any, with the messages that came while the tab was in
// the background.
export class Unread extends EventTarget {
  constructor() {
    super();
    this.counts = new Map();
    this.hidden = 0; // messages shown while the tab was hidden
    this.title = (globalThis.document?.title ?? '').replace(/^\(\d+\) /, '');
    this.timer = 0;
    globalThis.document?.addEventListener('visibilitychange', () => {
      if (!document.hidden && this.hidden) {
        this.hidden = 0;
        this.changed();
      }
    });
  }

  // hiddenOne counts a message shown while the tab is in the background.
  hiddenOne() {
    this.hidden++;
    this.changed();
  }

  // mail notes a mailbox notice from a user: the counts are asked again, once for a burst of notices.
  mail() {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.refresh(), 300);
  }

  clear() {
    this.counts.clear();
    this.hidden = 0;
    this.changed();
  }

  // refresh asks the relay what waits; it resolves to the summary, or null when the mailbox is off or the
  // relay cannot be reached (the counts stay as they were).
  async refresh() {
    let s;
    try {
      s = await summary();
    } catch {
      return null;
    }
    this.counts = new Map(s.waiting.filter((w) => w.unread > 0).map((w) => [w.from, w.unread]));
    this.changed();
    return s;
  }

  // read forgets the count of a peer whose dialog shows its messages now.
  read(peer) {
    if (this.counts.delete(peer)) this.changed();
  }

  total() {
    let n = this.hidden;
    for (const c of this.counts.values()) n += c;
    return n;
  }

  changed() {
    const n = this.total();
    if (globalThis.document) document.title = n ? `(${n}) ${this.title}` : this.title;
    this.dispatchEvent(new CustomEvent('change'));
  }
}

// unread is the page's one set of counts: the dialogs list and the dialogs both keep it.
export const unread = new Unread();
