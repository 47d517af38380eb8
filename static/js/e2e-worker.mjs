// Module e2e-worker gives the crypto worker its protocol v2 operations for anonymous rooms and live dialogs (docs/e2e.md).
//
// Every operation returns {payloads, notes, messages, canSend, why}: the padded frames to send in
// order, what to tell the user, and the plaintexts that arrived. Peer views for the key dialog come
// from the display key (the tab's OpenPGP key) inside each identity announcement.
import * as pgp from './pgp.mjs';
import { Group } from './e2e-group.mjs';
import { PgpIdentity, PgpVerifier } from './e2e-pgp.mjs';
import { Identity } from './e2e-keys.mjs';
import { inviteKey } from './e2e-identity.mjs';
import { hex } from './e2e-commit.mjs';
import { encodePayload, unb64u } from './proto.mjs';

const td = new TextDecoder();

export function v2Ops(state) {
  let g = null;
  let captured = null; // message keys, only when the page asked for them at start (tests)
  // A dialog's peer key from the directory (null in anonymous rooms), and the key packages refused while a
  // new peer key waited for the user (taken again once it is accepted).
  let dialogPeer = null;
  let refused = [];

  // merge appends result b to a.
  const merge = (a, b) => {
    a.send.push(...b.send);
    a.notes.push(...b.notes);
    a.messages.push(...b.messages);
    return a;
  };

  // pinPeers gives every member present in a dialog the directory key as its identity (dialogs announce none).
  async function pinPeers(r, members) {
    if (!dialogPeer) return r;
    for (const m of members) if (m !== g.member && !g.peers.has(m)) merge(r, await g.setPeer(m, dialogPeer));
    return r;
  }

  async function view(member, pub, display) {
    let info = null;
    if (display?.length) {
      try {
        info = pgp.keyInfo(await pgp.readPublicKey(td.decode(display)));
      } catch {
        info = null;
      }
    }
    info ??= { algorithm: 'Ed25519 (one-time)', bits: null, curve: 'ed25519', created: null, fingerprint: pgp.formatFingerprint(hex(pub)), userIDs: [], armored: '' };
    return { member, ...info, safety: await pgp.safetyCode(hex(g.identity.pub), hex(pub)) };
  }

  async function out(r) {
    const notes = [];
    for (const n of r.notes) {
      if (n.code === 'identity') {
        const p = g.peers.get(n.member);
        const note = { ...n, display: undefined, offered: undefined, peer: await view(n.member, p.pub, p.display) };
        if (n.status === 'changed') note.offered = await view(n.member, p.pending.pub, p.pending.display);
        notes.push(note);
      } else {
        notes.push(n);
      }
    }
    const res = {
      payloads: r.send.map((f) => encodePayload(f.kind, f.body)),
      notes,
      messages: r.messages.map((m) => ({ from: m.from, data: m.plaintext, epoch: m.epoch, n: m.n })),
      canSend: g.canSend(),
      why: g.whyNot(),
    };
    if (captured?.length) res.keys = captured.splice(0);
    if (g.holdRestarted && r.notes.some((n) => n.code === 'epoch')) res.spent = g.spentHashes(); // dialogs keep it (§13)
    return res;
  }

  return {
    // v2start begins protocol v2 in an anonymous room we joined as member with others present. seed (32 bytes,
    // base64url) is the identity the tab keeps for its seat; restarted says the seat was taken back after a
    // reload that lost the epoch keys (docs/e2e.md §13).
    async v2start({ roomId, secret, member, present, capture = false, seed = null, restarted = false }) {
      g?.wipe();
      captured = capture ? [] : null;
      const onKey = capture ? (dir, info, kn) => captured.push({ dir, ...info, epochId: hex(g.epoch.id), key: hex(kn) }) : null;
      g = new Group({
        room: roomId, member, identity: seed ? await Identity.fromSeed(unb64u(seed)) : await Identity.generate(), key: await inviteKey(unb64u(secret), roomId), restarted,
        display: state.key ? new TextEncoder().encode(state.key.toPublic().armor(pgp.CONFIG)) : new Uint8Array(0), onKey,
      });
      const r = await g.setPresent(present);
      if (present.length) {
        const h = await g.hello();
        r.send.push(...h.send);
      }
      return out(r);
    },

    async v2presence({ event, member }) {
      const r = await g.onPresence(event, member);
      return out(event === 'leave' ? r : await pinPeers(r, [member]));
    },

    async v2present({ present }) {
      return out(await pinPeers(await g.setPresent(present), present));
    },

    async v2frame({ from, kind, body }) {
      const t0 = performance.now();
      const r = await g.onFrame(from, kind, body);
      if (dialogPeer && r.notes.some((n) => n.code === 'forged' && n.kind === 'keypackage')) refused = [...refused.slice(-3), { from, kind, body }];
      const res = await out(r);
      res.ms = performance.now() - t0;
      return res;
    },

    async v2seal({ data }) {
      const t0 = performance.now();
      // Where the message sits (epoch, number), read before the seal moves the chain: a reloaded peer asks for
      // a message again by it.
      const at = g.epoch ? { epoch: g.epoch.number, n: g.epoch.chains.get(g.member)?.next } : null;
      const f = await g.seal(data);
      const res = { payload: encodePayload(f.kind, f.body), ms: performance.now() - t0, at };
      if (captured?.length) res.keys = captured.splice(0);
      return res;
    },

    async v2trust({ member }) {
      const res = await out(await g.trust(member));
      const p = g.peers.get(member);
      res.peer = await view(member, p.pub, p.display);
      return res;
    },

    v2wipe() {
      g?.wipe();
      g = null;
      captured = null;
      dialogPeer = null;
      refused = [];
      return true;
    },

    // --- Live dialogs (docs/e2e.md §13): the account's OpenPGP key is our identity, the peer's pinned
    // directory key is every other member's; nothing is announced. ---

    // v2dialog begins protocol v2 in a dialog room we joined as member; peerArmored is the pinned directory key.
    // restarted says the seat was taken back after a reload that lost the epoch keys; spent is what the old page
    // kept of the key packages its commits used (res.spent).
    async v2dialog({ roomId, member, present, peerArmored, capture = false, restarted = false, spent = [] }) {
      if (!state.key) throw new Error('no key: generate or import one first');
      g?.wipe();
      captured = capture ? [] : null;
      refused = [];
      dialogPeer = await pgp.readPublicKey(peerArmored);
      const onKey = capture ? (dir, info, kn) => captured.push({ dir, ...info, epochId: hex(g.epoch.id), key: hex(kn) }) : null;
      g = new Group({ room: roomId, member, identity: new PgpIdentity(state.key), verifierFor: (k) => new PgpVerifier(k), restarted, onKey, holdRestarted: true, spent: restarted ? spent : [] });
      const r = await pinPeers(await g.setPresent(present), present);
      if (present.length) merge(r, await g.hello());
      return out(r);
    },

    // v2dialogPeer makes a new directory key of the peer (accepted by the user) its identity, and takes the
    // key packages it signed that arrived while it waited.
    async v2dialogPeer({ armored }) {
      dialogPeer = await pgp.readPublicKey(armored);
      const r = { send: [], notes: [], messages: [] };
      for (const m of g.peers.keys()) merge(r, await g.setPeer(m, dialogPeer));
      for (const f of refused.splice(0)) merge(r, await g.onFrame(f.from, f.kind, f.body));
      return out(r);
    },
  };
}
