import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as pgp from '../../static/js/pgp.mjs';
import { readZip } from '../../static/js/zip.mjs';
import { BUCKETS } from '../../static/js/pad.mjs';
import { KIND_PGP, encodePayload, decodePayload, encodeEnvelope } from '../../static/js/proto.mjs';
import { FILE_CHUNK } from '../../static/js/room.mjs';

const te = new TextEncoder();
const td = new TextDecoder();
let alice;
let bob;
let carol;

before(async () => {
  [alice, bob, carol] = await Promise.all([
    pgp.generateKeyPair({ name: 'alice' }),
    pgp.generateKeyPair({ name: 'bob' }),
    pgp.generateKeyPair({ type: 'curve25519', name: 'carol' }),
  ]);
});

test('default keys are v4 RSA-4096; curve25519 is the legacy v4 encoding', () => {
  const a = pgp.keyInfo(alice);
  assert.equal(a.algorithm, 'RSA');
  assert.equal(a.bits, 4096);
  assert.equal(alice.keyPacket.version, 4);
  assert.match(a.fingerprint, /^([0-9A-F]{4} ){9}[0-9A-F]{4}$/);
  assert.match(a.armored, /BEGIN PGP PUBLIC KEY BLOCK/);
  const c = pgp.keyInfo(carol);
  assert.equal(c.curve, 'ed25519Legacy');
  assert.equal(carol.keyPacket.version, 4);
});

test('sender reuses one session key until recipients change; receiver caches it', async () => {
  const s = new pgp.Sender(alice);
  s.setRecipients([bob.toPublic()]);
  const r = new pgp.Receiver(bob);
  const m1 = await s.encrypt(te.encode('first'));
  const m2 = await s.encrypt(te.encode('second'));
  assert.equal(s.rotations, 1);
  const d1 = await r.decrypt(m1, alice.toPublic());
  assert.equal(td.decode(d1.data), 'first');
  assert.equal(d1.verified, true);
  assert.equal(d1.cached, false);
  const d2 = await r.decrypt(m2, alice.toPublic());
  assert.equal(td.decode(d2.data), 'second');
  assert.equal(d2.cached, true);
  // Membership change: carol joins, the key rotates, bob falls back to his private key once.
  assert.equal(s.setRecipients([bob.toPublic(), carol.toPublic()]), true);
  assert.equal(s.setRecipients([carol.toPublic(), bob.toPublic()]), false, 'same set in another order is no change');
  const m3 = await s.encrypt(te.encode('third'));
  assert.equal(s.rotations, 2);
  const d3 = await r.decrypt(m3, alice.toPublic());
  assert.equal(td.decode(d3.data), 'third');
  assert.equal(d3.cached, false);
  const d3c = await new pgp.Receiver(carol).decrypt(m3, alice.toPublic());
  assert.equal(td.decode(d3c.data), 'third');
  // The sender can read its own message (encrypted to self).
  assert.equal(td.decode((await new pgp.Receiver(alice).decrypt(m3, alice.toPublic())).data), 'third');
});

test('a message signed by another key than the pinned one is marked unverified', async () => {
  const s = new pgp.Sender(carol);
  s.setRecipients([bob.toPublic()]);
  const m = await s.encrypt(te.encode('who am i'));
  const d = await new pgp.Receiver(bob).decrypt(m, alice.toPublic());
  assert.equal(td.decode(d.data), 'who am i');
  assert.equal(d.verified, false);
});

test('a message not encrypted to us is an error, and so is a tampered one', async () => {
  const s = new pgp.Sender(alice);
  s.setRecipients([bob.toPublic()]);
  const m = await s.encrypt(te.encode('not for carol'));
  await assert.rejects(new pgp.Receiver(carol).decrypt(m, alice.toPublic()), /failed to decrypt/);
  const bad = m.slice();
  bad[bad.length - 30] ^= 1;
  await assert.rejects(new pgp.Receiver(bob).decrypt(bad, alice.toPublic()));
});

test('frame payloads have exact sizes: the padding bucket decides, not the message or MPI jitter', async (t) => {
  const s = new pgp.Sender(alice);
  s.setRecipients([bob.toPublic()]);
  // The OpenPGP message alone is a byte or two shorter now and then (RSA signature and session-key MPIs with a
  // leading zero byte, about 1 in 256 each, at random): the frame padding absorbs that, so every frame of a
  // plaintext bucket has one size. Many messages, so that some jitter is likely to be among them.
  const raw = new Set();
  for (let i = 0; i < 60; i++) {
    const msg = await s.encrypt(te.encode('x'.repeat(i * 4)));
    raw.add(msg.length);
    assert.equal(encodePayload(KIND_PGP, msg).length, 2048, `frame of a ${i * 4}-byte message`);
  }
  t.diagnostic(`OpenPGP message sizes seen for the 256-byte bucket: ${[...raw].sort().join(', ')}`);
  // Each plaintext bucket, two RSA-4096 members: its own frame size (docs/client.md).
  const want = { 256: 2048, 1024: 4096, 4096: 8192, 16384: 24576, 40960: 49152 };
  for (const b of BUCKETS) {
    assert.equal(encodePayload(KIND_PGP, await s.encrypt(new Uint8Array(b - 4))).length, want[b], `bucket ${b}`);
  }
  // A file chunk: 32 KiB of data and its envelope header take the 40 KiB plaintext bucket and a 48 KiB frame.
  const chunk = encodeEnvelope({ k: 'chunk', id: 'AAAAAAAAAAAA', i: 255 }, new Uint8Array(FILE_CHUNK));
  assert.equal(encodePayload(KIND_PGP, await s.encrypt(chunk)).length, 49152);
  // Two Curve25519 members make smaller messages: a short one fits 1 KiB.
  const c = new pgp.Sender(carol);
  c.setRecipients([(await pgp.generateKeyPair({ type: 'curve25519', name: 'dave' })).toPublic()]);
  assert.equal(encodePayload(KIND_PGP, await c.encrypt(te.encode('hi'))).length, 1024);
  // Three members (RSA, RSA, Curve25519): a short message moves up to 4 KiB, still a frame bucket.
  s.setRecipients([bob.toPublic(), carol.toPublic()]);
  assert.equal(encodePayload(KIND_PGP, await s.encrypt(te.encode('hi'))).length, 4096);
  // The receiver gets the message back from the frame.
  const f = encodePayload(KIND_PGP, await s.encrypt(te.encode('through the frame')));
  const d = await new pgp.Receiver(bob).decrypt(decodePayload(f).body, alice.toPublic());
  assert.equal(td.decode(d.data), 'through the frame');
});

test('key pair zip export/import keeps the fingerprint and needs the passphrase', async () => {
  const zip = await pgp.exportZip(alice, 'Correct-horse1');
  const files = readZip(zip);
  const priv = [...files].find(([n]) => n.endsWith('-private.asc'))[1];
  const privText = td.decode(priv);
  assert.match(privText, /BEGIN PGP PRIVATE KEY BLOCK/);
  const locked = await pgp.openpgp.readPrivateKey({ armoredKey: privText });
  assert.equal(locked.isDecrypted(), false);
  assert.equal(locked.keyPacket.s2k.type, 'iterated', 'private key must use the iterated S2K (no Argon2)');
  const back = await pgp.importZip(zip, 'Correct-horse1');
  assert.equal(back.getFingerprint(), alice.getFingerprint());
  await assert.rejects(pgp.importZip(zip, 'wrong'), /wrong passphrase/);
  await assert.rejects(pgp.importZip(new Uint8Array(30), 'x'), /not a zip/);
});

test('safety code is symmetric and depends on both keys', async () => {
  const a = pgp.fingerprint(alice);
  const b = pgp.fingerprint(bob);
  const ab = await pgp.safetyCode(a, b);
  assert.match(ab, /^\d{5}( \d{5}){5}$/);
  assert.equal(await pgp.safetyCode(b, a), ab);
  assert.notEqual(await pgp.safetyCode(a, pgp.fingerprint(carol)), ab);
});

test('GnuPG imports the exported key pair, decrypts a message and verifies its signature', async () => {
  const home = mkdtempSync(join(tmpdir(), 'crgpg-'));
  try {
    const gpg = (args, input) => execFileSync('gpg', ['--homedir', home, '--batch', '--no-tty', ...args], { input, stdio: ['pipe', 'pipe', 'pipe'] });
    const bobZip = readZip(await pgp.exportZip(bob, 'Bob-pass1!'));
    for (const [name, data] of bobZip) {
      if (name.endsWith('.asc')) writeFileSync(join(home, name), data);
    }
    gpg(['--pinentry-mode', 'loopback', '--passphrase', 'Bob-pass1!', '--import', ...[...bobZip.keys()].filter((n) => n.endsWith('.asc')).map((n) => join(home, n))]);
    gpg(['--import'], alice.toPublic().armor());
    const s = new pgp.Sender(alice);
    s.setRecipients([bob.toPublic()]);
    await s.encrypt(te.encode('warm up the session key'));
    const msg = await s.encrypt(te.encode('hello gpg, from the browser client'));
    writeFileSync(join(home, 'm.pgp'), msg);
    const status = join(home, 'status');
    const out = gpg(['--pinentry-mode', 'loopback', '--passphrase', 'Bob-pass1!', '--status-file', status, '--decrypt', join(home, 'm.pgp')]);
    assert.ok(out.includes(te.encode('hello gpg, from the browser client')), 'plaintext not in gpg output');
    const st = execFileSync('cat', [status]).toString();
    assert.match(st, new RegExp(`VALIDSIG ${alice.getFingerprint().toUpperCase()}`));
    assert.match(st, /DECRYPTION_OKAY/);
  } finally {
    try { execFileSync('gpgconf', ['--homedir', home, '--kill', 'gpg-agent']); } catch { /* no agent started */ }
    rmSync(home, { recursive: true, force: true });
  }
});

test('a v6 key (RFC 9580, Ed25519/X25519): 32-byte fingerprint, export and import, a README that does not promise GnuPG', async () => {
  const v6 = await pgp.generateKeyPair({ type: 'v6', name: 'dave', email: 'dave@example.org' });
  assert.equal(v6.keyPacket.version, 6);
  assert.deepEqual(v6.getSubkeys().map((s) => [s.keyPacket.version, s.getAlgorithmInfo().algorithm]), [[6, 'x25519']]);
  const info = pgp.keyInfo(v6);
  assert.equal(info.version, 6);
  assert.equal(info.algorithm, 'Ed25519/X25519 (OpenPGP v6)');
  assert.match(info.fingerprint, /^([0-9A-F]{4} ){15}[0-9A-F]{4}$/);
  assert.equal(pgp.keyInfo(carol).version, 4);
  const zip = await pgp.exportZip(v6, 'Correct-horse1');
  const readme = td.decode(readZip(zip).get('README.txt'));
  assert.match(readme, /v6 key \(RFC 9580\): GnuPG 2\.2 and 2\.4 cannot import it/);
  assert.doesNotMatch(readme, /gpg --import/);
  assert.match(td.decode(readZip(await pgp.exportZip(carol, 'Correct-horse1')).get('README.txt')), /gpg --import/);
  const back = await pgp.importZip(zip, 'Correct-horse1');
  assert.equal(back.getFingerprint(), v6.getFingerprint());
  assert.equal(back.keyPacket.s2k.type, 'iterated', 'the v6 private key must use the iterated S2K too (no Argon2)');
  // The safety code of a v6 and a v4 key is the same from both sides.
  assert.equal(await pgp.safetyCode(pgp.fingerprint(v6), pgp.fingerprint(carol)), await pgp.safetyCode(pgp.fingerprint(carol), pgp.fingerprint(back)));
  await assert.rejects(pgp.generateKeyPair({ type: 'v5' }), /unknown type v5/);
  // What the key setup's label says: the installed GnuPG (2.2 here) imports none of it.
  const home = mkdtempSync(join(tmpdir(), 'crgpg6-'));
  try {
    const r = spawnSync('gpg', ['--homedir', home, '--batch', '--no-tty', '--status-fd', '1', '--import'], { input: v6.toPublic().armor() });
    assert.match(r.stdout.toString(), /IMPORT_RES 0 0 0/, 'GnuPG imported a v6 key');
  } finally {
    try { execFileSync('gpgconf', ['--homedir', home, '--kill', 'gpg-agent']); } catch { /* no agent started */ }
    rmSync(home, { recursive: true, force: true });
  }
});
