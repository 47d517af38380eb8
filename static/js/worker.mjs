// Module worker is the crypto Web Worker: it holds this tab's keys and does every crypto operation (OpenPGP,
// and protocol v2 of anonymous rooms), so the page never freezes and never touches a private key.
//
// Protocol: the page posts {id, op, args}; the worker answers {id, ok, value} or {id, ok:false, error}.
// Keys die with the worker (closing the tab, or "wipe").
import * as pgp from './pgp.mjs';
import { v2Ops } from './e2e-worker.mjs';
import { mailOps } from './e2e-mailworker.mjs';

const state = {
  key: null, // unlocked private key of this tab
  peers: new Map(), // member id -> {key, fp} (pinned on first use)
  pending: new Map(), // member id -> {key, fp} announced but different from the pinned key
  present: new Set(), // member ids currently in the room
};

function requireKey() {
  if (!state.key) throw new Error('no key: generate or import one first');
}

function setKey(key) {
  state.key = key;
  state.peers.clear();
  state.pending.clear();
}

async function peerView(member, p) {
  return {
    member,
    ...pgp.keyInfo(p.key),
    safety: await pgp.safetyCode(pgp.fingerprint(state.key), pgp.fingerprint(p.key)),
  };
}

const ops = {
  async caps() {
    return { curve25519: await pgp.hasFastCurve25519(), subtle: !!globalThis.crypto?.subtle };
  },

  async generate({ type = 'rsa', name = 'anonymous', email } = {}) {
    const t0 = performance.now();
    setKey(await pgp.generateKeyPair({ type, name, email }));
    return { ...pgp.keyInfo(state.key), ms: performance.now() - t0 };
  },

  // lock returns this tab's private key, armored and protected by passphrase (for browser storage).
  async lock({ passphrase }) {
    requireKey();
    return pgp.lockKey(state.key, passphrase);
  },

  async unlock({ armored, passphrase }) {
    setKey(await pgp.unlockKey(armored, passphrase));
    return pgp.keyInfo(state.key);
  },

  async sign({ text }) {
    requireKey();
    return pgp.signDetached(state.key, text);
  },

  // peerKey reads a directory key (accounts) and returns its details; it pins nothing: the page
  // keeps the pins across reloads.
  async peerKey({ armored }) {
    requireKey();
    const key = await pgp.readPublicKey(armored);
    return { ...pgp.keyInfo(key), safety: await pgp.safetyCode(pgp.fingerprint(state.key), pgp.fingerprint(key)) };
  },

  // setPeer pins member's key: a dialog's peer, whose key checks its v2 key packages and commits, its mailbox
  // items and its prekeys.
  async setPeer({ member, armored }) {
    requireKey();
    const key = await pgp.readPublicKey(armored);
    state.peers.set(member, { key, fp: key.getFingerprint() });
    return peerView(member, state.peers.get(member));
  },

  // dialog starts an accounts dialog: no invite secret; keys come from the directory.
  async dialog() {
    state.peers.clear();
    state.pending.clear();
    state.present.clear();
    return true;
  },

  async importZip({ bytes, passphrase }) {
    setKey(await pgp.importZip(bytes, passphrase));
    return pgp.keyInfo(state.key);
  },

  async exportZip({ passphrase }) {
    requireKey();
    return pgp.exportZip(state.key, passphrase);
  },

  async info() {
    requireKey();
    return pgp.keyInfo(state.key);
  },

  // trustChanged replaces a pinned key with the pending one after the user compared safety codes.
  async trustChanged({ member }) {
    const p = state.pending.get(member);
    if (!p) throw new Error('no pending key change for that member');
    state.pending.delete(member);
    state.peers.set(member, p);
    return peerView(member, p);
  },

  // members notes who is present; it returns how many of them have a pinned key.
  async members({ present }) {
    state.present = new Set(present);
    return [...state.peers.keys()].filter((m) => state.present.has(m)).length;
  },

  async wipe() {
    ops.v2wipe();
    state.key = null;
    state.peers.clear();
    state.pending.clear();
    state.present.clear();
    return true;
  },
};

Object.assign(ops, v2Ops(state));
Object.assign(ops, mailOps(state)); // mailbox items with one-time prekeys (docs/e2e.md §9)

self.onmessage = async (ev) => {
  const { id, op, args } = ev.data;
  try {
    if (!Object.hasOwn(ops, op)) throw new Error(`unknown operation ${op}`);
    const value = await ops[op](args);
    const transfer = value instanceof Uint8Array ? [value.buffer] : value?.payload instanceof Uint8Array ? [value.payload.buffer] : [];
    self.postMessage({ id, ok: true, value }, transfer);
  } catch (e) {
    self.postMessage({ id, ok: false, error: String(e?.message || e) });
  }
};
