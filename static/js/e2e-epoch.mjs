// Module e2e-epoch holds one epoch's per-sender ratchets: each message key is derived, used once and deleted.
import { VERSION, MESSAGE_HEAD, MAX_SKIP, INFO, fail, concat, u32, getU32, hkdf, gcmSeal, gcmOpen, pad, unpad } from './e2e-core.mjs';

async function step(ck) {
  const out = await hkdf(ck, new Uint8Array(0), INFO.chain, 76);
  return { next: out.subarray(0, 32), kn: out.subarray(32) };
}

export function header(epoch, sender, n) {
  return concat(Uint8Array.of(VERSION), u32(epoch), u32(sender), u32(n));
}

// readHeader returns {epoch, sender, n} of a message without opening it.
export function readHeader(b) {
  if (b.length < 1 || b[0] !== VERSION) fail('version', 'failed to read message');
  if (b.length < MESSAGE_HEAD + 16) fail('malformed', 'failed to read message: too short');
  return { epoch: getU32(b, 1), sender: getU32(b, 5), n: getU32(b, 9) };
}

export class Epoch {
  // create derives the sender chains of members from the epoch secret; the caller then wipes secret.
  static async create(number, id, secret, members) {
    const e = new Epoch();
    e.number = number;
    e.id = id;
    e.chains = new Map();
    const es = await hkdf(secret, id, INFO.epoch, 32);
    for (const m of members) {
      e.chains.set(m, { ck: await hkdf(es, new Uint8Array(0), concat(INFO.sender, u32(m)), 32), next: 0, skipped: new Map() });
    }
    es.fill(0);
    return e;
  }

  // seal encrypts plaintext as sender's next message. onKey, when given, sees the message key (the
  // forward-secrecy test captures keys this way; nothing else does).
  async seal(sender, plaintext, onKey = null) {
    const c = this.chains.get(sender);
    if (!c) fail('not-member', 'failed to seal');
    const padded = pad(plaintext);
    const { next, kn } = await step(c.ck);
    c.ck.fill(0);
    c.ck = next;
    const h = header(this.number, sender, c.next++);
    onKey?.(kn);
    const ct = await gcmSeal(kn.subarray(0, 32), kn.subarray(32), padded, concat(h, this.id));
    kn.fill(0);
    return concat(h, ct);
  }

  // open decrypts a message the relay stamped as sent by from; it returns {plaintext, missing} where
  // missing counts earlier messages of that sender not seen yet (their keys are kept, at most MAX_SKIP).
  // Errors: forged, replayed, missing, not-member, malformed.
  async open(from, b, onKey = null) {
    const { epoch, sender, n } = readHeader(b);
    if (epoch !== this.number) fail('malformed', `failed to open message: epoch ${epoch}, not ${this.number}`);
    if (sender !== from) fail('forged', `failed to open message: names sender ${sender} but came from ${from}`);
    const c = this.chains.get(sender);
    if (!c) fail('not-member', `failed to open message from ${sender}`);
    let kn = null;
    let ck = c.ck;
    const skipped = [];
    if (n < c.next) {
      kn = c.skipped.get(n);
      if (!kn) fail('replayed', `failed to open message ${n} from ${sender}`);
    } else {
      if (n - c.next > MAX_SKIP || c.skipped.size + (n - c.next) > MAX_SKIP) fail('missing', `failed to open message ${n} from ${sender}: ${n - c.next} skipped`);
      for (let i = c.next; i < n; i++) {
        const s = await step(ck);
        skipped.push([i, s.kn]);
        ck = s.next;
      }
      const s = await step(ck);
      ck = s.next;
      kn = s.kn;
    }
    onKey?.(kn);
    const padded = await gcmOpen(kn.subarray(0, 32), kn.subarray(32), b.subarray(13), concat(b.subarray(0, 13), this.id));
    if (!padded) fail('forged', `failed to open message ${n} from ${sender}`);
    const plaintext = unpad(padded);
    // Only an authentic message moves the chain, so a forged one cannot make us skip or delete keys.
    let missing = 0;
    if (n < c.next) {
      c.skipped.delete(n);
    } else {
      for (const [i, k] of skipped) c.skipped.set(i, k);
      missing = n - c.next;
      c.ck.fill(0);
      c.ck = ck;
      c.next = n + 1;
    }
    kn.fill(0);
    return { plaintext, missing };
  }

  wipe() {
    for (const c of this.chains.values()) {
      c.ck.fill(0);
      for (const k of c.skipped.values()) k.fill(0);
    }
    this.chains.clear();
  }
}
