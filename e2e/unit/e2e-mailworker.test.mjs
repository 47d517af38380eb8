// The worker's mailbox operations (docs/e2e.md §9) with real OpenPGP account keys: a bundle of prekeys signed
// by bob, alice seals with one of them, bob opens it once; the stored blob, reloaded, has lost the used prekey
// and keeps the others; a prekey signed by another key is refused.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as pgp from '../../static/js/pgp.mjs';
import { mailOps } from '../../static/js/e2e-mailworker.mjs';
import { decodePayload, KIND_MAIL, b64u } from '../../static/js/proto.mjs';
import { getU16 } from '../../static/js/e2e-core.mjs';

const PEER = 0;

function prekeysOf(bundle) {
  const out = [];
  for (let i = 0, o = 2; i < getU16(bundle, 0); i++) {
    const n = getU16(bundle, o);
    out.push(bundle.slice(o + 2, o + 2 + n));
    o += 2 + n;
  }
  return out;
}

async function account(name) {
  const { privateKey } = await pgp.openpgp.generateKey({ type: 'curve25519', userIDs: [{ name }], format: 'object' });
  return { key: privateKey, peers: new Map() };
}

test('a prekey serves one item; the stored private halves follow', { timeout: 120000 }, async () => {
  const alice = await account('alice');
  const bob = await account('bob');
  alice.peers.set(PEER, { key: bob.key.toPublic() });
  bob.peers.set(PEER, { key: alice.key.toPublic() });
  const b = mailOps(bob);
  await b.prekeysLoad({ user: 'bob', stored: null });
  const top = await b.prekeysTopUp({ left: [], want: 3 });
  assert.equal(top.published, 3);
  const raws = prekeysOf(top.bundle);
  assert.equal(raws.length, 3);
  assert.deepEqual(raws.map((r) => new DataView(r.buffer, r.byteOffset).getUint32(5)), [1, 2, 3], 'prekey ids');

  const a = mailOps(alice);
  const env = new TextEncoder().encode('an envelope for bob');
  const sealed = await a.mailSeal({ to: 'bob', member: PEER, prekey: b64u(raws[0]), data: env });
  const p = decodePayload(sealed.payload);
  assert.equal(p.kind, KIND_MAIL);
  const opened = await b.mailOpen({ member: PEER, body: p.body.slice() });
  assert.equal(opened.error, undefined, opened.message);
  assert.deepEqual(opened.data, env);
  const again = await b.mailOpen({ member: PEER, body: p.body.slice() });
  assert.equal(again.error, 'replayed');

  // A new page: the blob written after the use lacks prekey 1 and holds 2 and 3.
  const b2 = mailOps(bob);
  assert.equal((await b2.prekeysLoad({ user: 'bob', stored: opened.stored })).kept, 2);
  assert.equal((await b2.mailOpen({ member: PEER, body: p.body.slice() })).error, 'replayed');
  const p2 = decodePayload((await a.mailSeal({ to: 'bob', member: PEER, prekey: b64u(raws[2]), data: env })).payload);
  assert.deepEqual((await b2.mailOpen({ member: PEER, body: p2.body.slice() })).data, env);
  // The blob from before the use still opens the first item: this is what the stored copy must not keep.
  const b3 = mailOps(bob);
  assert.equal((await b3.prekeysLoad({ user: 'bob', stored: top.stored })).kept, 3);
  assert.deepEqual((await b3.mailOpen({ member: PEER, body: p.body.slice() })).data, env);
  // Top-up keeps those still at the relay and adds new ids after the last.
  const top2 = await b2.prekeysTopUp({ left: [2], want: 3 });
  assert.deepEqual(prekeysOf(top2.bundle).map((r) => new DataView(r.buffer, r.byteOffset).getUint32(5)), [2, 4, 5]);
});

test('a prekey signed by another key than the pinned one is refused', { timeout: 120000 }, async () => {
  const alice = await account('alice');
  const bob = await account('bob');
  const mallory = await account('mallory');
  alice.peers.set(PEER, { key: bob.key.toPublic() });
  const m = mailOps(mallory);
  await m.prekeysLoad({ user: 'bob', stored: null });
  const raws = prekeysOf((await m.prekeysTopUp({ left: [], want: 1 })).bundle);
  await assert.rejects(mailOps(alice).mailSeal({ to: 'bob', member: PEER, prekey: b64u(raws[0]), data: new Uint8Array(3) }), /forged|failed to read key package/);
});

test('two devices of one account: each tops up over the other\'s prekeys, and leaves the other\'s items alone', { timeout: 120000 }, async () => {
  const alice = await account('alice');
  const bob = await account('bob');
  alice.peers.set(PEER, { key: bob.key.toPublic() });
  bob.peers.set(PEER, { key: alice.key.toPublic() });
  const first = mailOps(bob); // bob's browser
  const second = mailOps(bob); // another device of bob's (a second browser; the terminal works alike)
  await first.prekeysLoad({ user: 'bob', stored: null });
  await second.prekeysLoad({ user: 'bob', stored: null });
  const top = await first.prekeysTopUp({ left: [], want: 4, below: 2 });
  const ids = prekeysOf(top.bundle).map((r) => new DataView(r.buffer, r.byteOffset).getUint32(5));
  // Enough of its own are still at the relay: nothing to publish.
  assert.equal((await first.prekeysTopUp({ left: ids, want: 4, below: 2 })).bundle, null);
  // The second device sees only the first's prekeys at the relay (the same ids, not its own halves): it
  // publishes a full bundle of its own.
  const top2 = await second.prekeysTopUp({ left: ids, want: 4, below: 2 });
  assert.equal(top2.published, 4);
  // An item sealed with the first device's prekey is the first's: the second says so and keeps nothing of it.
  const a = mailOps(alice);
  const p = decodePayload((await a.mailSeal({ to: 'bob', member: PEER, prekey: b64u(prekeysOf(top.bundle)[0]), data: new Uint8Array([1, 2, 3]) })).payload);
  const there = await second.mailOpen({ member: PEER, body: p.body.slice() });
  assert.equal(there.error, 'replayed');
  assert.equal(there.elsewhere, true, 'an item for another device is not marked to stay at the relay');
  const here = await first.mailOpen({ member: PEER, body: p.body.slice() });
  assert.deepEqual(here.data, new Uint8Array([1, 2, 3]));
  // An item whose commit does not verify is no other device's: it is not left at the relay.
  const forged = p.body.slice();
  forged[2 + 20] ^= 1; // in the commit's prev field, under its signature
  const f = await second.mailOpen({ member: PEER, body: forged });
  assert.equal(f.error, 'forged');
  assert.notEqual(f.elsewhere, true);
});
