// End-to-end: two real browsers chat in an anonymous room through a real relay, while a
// recording proxy checks that the relay never saw a plaintext. Runs in Chromium and in Firefox
// ESR with Tor-Browser-"Safer"-like preferences (no JIT, no WebAssembly, private browsing).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync, copyFileSync } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startRelay, launch, openPage, shot, artifacts, press, say, sees, frames, assertCleanWire, exportKey, backlog, receiptsSettled } from './harness.mjs';
import { readZip } from '../../static/js/zip.mjs';
import * as pgp from '../../static/js/pgp.mjs';
import { DELIVER_HEADER, parseInvite, unb64u, encodePayload, decodePayload } from '../../static/js/proto.mjs';
import { KIND_IDENTITY, KIND_MESSAGE } from '../../static/js/e2e-core.mjs';
import { Identity } from '../../static/js/e2e-keys.mjs';
import { inviteKey, sealIdentity } from '../../static/js/e2e-identity.mjs';

const KINDS = (process.env.CR_BROWSERS ?? 'chromium,firefox').split(',').filter(Boolean);

async function createRoom(page) {
  await press(page, '#create');
  await page.waitForSelector('#invitelink', { timeout: 120000 });
  return page.$eval('#invitelink', (el) => el.value);
}

async function joinRoom(page) {
  await press(page, '#join');
  await page.waitForSelector('#room', { timeout: 120000 });
}

async function ready(page) {
  await page.waitForSelector('#status[data-ready="yes"]', { timeout: 60000 });
}

async function keyView(page) {
  await press(page, '#e2e');
  await page.waitForSelector('dialog#keys[open]');
  const v = await page.$$eval('dialog#keys .key', (blocks) => blocks.map((b) => ({
    fp: b.querySelector('.fp')?.textContent,
    safety: b.querySelector('.safety')?.textContent || null,
    algo: b.querySelector('dd')?.textContent,
  })));
  return v;
}

function binaryPayloads(proxy, dir, kind) {
  return frames(proxy).filter((f) => f.dir === dir && (kind === undefined || f.kind === kind));
}

// kindOf reads the payload kind of a relay → client binary message (null when it does not decode).
function kindOf(msg) {
  try {
    return decodePayload(new Uint8Array(msg.subarray(DELIVER_HEADER))).kind;
  } catch {
    return null;
  }
}

// withPayload returns the relay → client binary message msg with its payload replaced.
function withPayload(msg, payload) {
  return Buffer.concat([msg.subarray(0, DELIVER_HEADER), Buffer.from(payload)]);
}

function gpgHome() {
  const home = mkdtempSync(join(tmpdir(), 'cre2egpg-'));
  const run = (args, input) => execFileSync('gpg', ['--homedir', home, '--batch', '--no-tty', ...args], { input, stdio: ['pipe', 'pipe', 'pipe'] });
  return {
    home,
    run,
    done() {
      try {
        execFileSync('gpgconf', ['--homedir', home, '--kill', 'gpg-agent']);
      } catch {
        /* no agent */
      }
      rmSync(home, { recursive: true, force: true });
    },
  };
}

for (const kind of KINDS) {
  test(`${kind}: anonymous room end to end`, { timeout: 900000 }, async (t) => {
    const relay = await startRelay();
    const b = await launch(kind);
    const perf = { browser: kind };
    try {
      const alice = await openPage(b, relay.url);
      if (kind === 'firefox') {
        // The Safer-like prefs took effect: WebAssembly is gone, so no code path can rely on it.
        assert.equal(await alice.evaluate(() => typeof WebAssembly), 'undefined');
      }
      await shot(alice, `${kind}-home`);
      const invite = await createRoom(alice);
      assert.match(invite, /#r=[\w-]{22}&c=[\w-]{43}&k=[\w-]{43}$/);
      const secret = parseInvite(new URL(invite).hash).secret;
      const bob = await openPage(b, invite);
      await shot(bob, `${kind}-join`);
      await joinRoom(bob);
      await Promise.all([ready(alice), ready(bob)]);
      await shot(alice, `${kind}-room-ready`);

      await t.test('fingerprints and safety codes agree', async () => {
        const a = await keyView(alice);
        await shot(alice, `${kind}-keys`);
        await press(alice, '#keysclose');
        const bb = await keyView(bob);
        await press(bob, '#keysclose');
        assert.match(a[0].algo, /RSA 4096/);
        assert.equal(a[1].fp, bb[0].fp, 'alice pinned bob\'s real key');
        assert.equal(bb[1].fp, a[0].fp, 'bob pinned alice\'s real key');
        assert.match(a[1].safety, /^\d{5}( \d{5}){5}$/);
        assert.equal(a[1].safety, bb[1].safety);
      });

      const secrets = [];
      await t.test('chat both ways, with the encryption label', async () => {
        const m1 = `hello bob, here is alice ${randomBytes(6).toString('hex')}`;
        const m2 = `привет, alice, это bob ${randomBytes(6).toString('hex')}`;
        secrets.push(m1, m2);
        await say(alice, m1);
        await sees(bob, m1);
        await say(bob, m2);
        await sees(alice, m2);
        assert.equal(await alice.$eval('#e2e', (e) => e.textContent), 'End-to-end encrypted');
        for (const p of [alice, bob]) {
          assert.deepEqual(await p.$$eval('.problem', (l) => l.map((e) => e.textContent)), [], 'a problem is shown in a normal chat');
        }
        await shot(alice, `${kind}-chat`);
      });

      await t.test('Russian interface', async () => {
        await press(bob, '#lang');
        assert.equal(await bob.$eval('#e2e', (e) => e.textContent), 'Сквозное шифрование');
        await shot(bob, `${kind}-chat-ru`);
        await press(bob, '#lang');
        assert.equal(await bob.$eval('#e2e', (e) => e.textContent), 'End-to-end encrypted');
      });

      await t.test('per-message timer removes the message on both screens', async () => {
        const m = `this vanishes ${randomBytes(6).toString('hex')}`;
        secrets.push(m);
        await alice.select('#ttl', '10');
        await say(alice, m);
        await sees(bob, m);
        await alice.select('#ttl', '0');
        const gone = (v) => ![...document.querySelectorAll('.msg .text')].some((e) => e.textContent === v);
        await Promise.all([alice.waitForFunction(gone, { timeout: 20000, polling: 100 }, m), bob.waitForFunction(gone, { timeout: 20000, polling: 100 }, m)]);
      });

      let fileBytes;
      let fileName;
      await t.test('file transfer', async () => {
        const dir = mkdtempSync(join(tmpdir(), 'crfile-'));
        fileBytes = randomBytes(150 * 1024);
        const marker = Buffer.from(`FILE-PLAINTEXT-MARKER-${randomBytes(6).toString('hex')}`);
        marker.copy(fileBytes, 1000);
        secrets.push(marker.toString());
        fileName = `report-${randomBytes(6).toString('hex')}.bin`;
        secrets.push(fileName);
        // Pieces of the file from every 4 KiB, so a leak of any part of it shows.
        for (let off = 0; off + 32 <= fileBytes.length; off += 4096) secrets.push(fileBytes.subarray(off, off + 32));
        const path = join(dir, fileName);
        writeFileSync(path, fileBytes);
        const input = await bob.$('#file');
        await input.uploadFile(path);
        await alice.waitForSelector('a.save', { timeout: 120000 });
        const got = await alice.$eval('a.save', async (a) => {
          const buf = new Uint8Array(await a.cleanrelayBlob.arrayBuffer());
          let s = '';
          for (const x of buf) s += String.fromCharCode(x);
          return { b64: btoa(s), name: a.getAttribute('download') };
        });
        assert.equal(got.name, fileName);
        const h = (x) => createHash('sha256').update(x).digest('hex');
        assert.equal(h(Buffer.from(got.b64, 'base64')), h(fileBytes));
        // The sender's bubble finishes too: no progress bar left, the name, the size and a time.
        await bob.waitForSelector('.msg.mine.file[data-done="sent"]', { timeout: 60000 });
        const sent = await bob.$eval('.msg.mine.file', (e) => ({ text: e.textContent, bars: e.querySelectorAll('progress').length }));
        assert.equal(sent.bars, 0);
        assert.match(sent.text, new RegExp(`^Sent ${fileName} \\(150 kB\\)\\d{2}:\\d{2}`));
        await shot(alice, `${kind}-file`);
        rmSync(dir, { recursive: true });
      });

      await t.test('resume after a dropped connection', async () => {
        const bobConn = relay.proxy.conns.filter((c) => c.first === 'join').at(-1);
        relay.proxy.drop(bobConn);
        await bob.waitForFunction(() => document.querySelectorAll('.system').length && [...document.querySelectorAll('.system')].some((e) => /reconnected/.test(e.textContent)), { timeout: 60000, polling: 100 });
        const m = `after the drop ${randomBytes(6).toString('hex')}`;
        secrets.push(m);
        await say(alice, m);
        await sees(bob, m);
        const m2 = `bob is back ${randomBytes(6).toString('hex')}`;
        secrets.push(m2);
        await say(bob, m2);
        await sees(alice, m2);
      });

      await t.test('a malformed frame is refused with a clear error and loses nothing already accepted', async () => {
        // Receipts (docs/e2e.md §7.4) are messages too: wait until none is on its way, so that the frame broken
        // below is the one with the text.
        await receiptsSettled(alice, bob);
        const bobConn = relay.proxy.conns.filter((c) => c.first === 'resume' || c.first === 'join').at(-1);
        let broken = 0;
        bobConn.tamper = (msg) => {
          if (broken || kindOf(msg) !== KIND_MESSAGE) return null;
          broken++;
          const bad = Buffer.from(msg);
          bad.writeUInt32BE(0xffffffff, DELIVER_HEADER + 1); // the padded payload's length field
          return bad;
        };
        const lost = `this one is broken on the way ${randomBytes(6).toString('hex')}`;
        const next = `this one arrives ${randomBytes(6).toString('hex')}`;
        secrets.push(lost, next);
        await say(alice, lost);
        await bob.waitForFunction(() => [...document.querySelectorAll('.problem')].some((e) => /could not be read/.test(e.textContent) && /failed to decode payload: .*overruns/.test(e.title)),
          { timeout: 60000, polling: 100 });
        bobConn.tamper = null;
        await say(alice, next);
        await sees(bob, next);
        const shown = await bob.$$eval('.msg .text', (l) => l.map((e) => e.textContent));
        assert.ok(!shown.includes(lost), 'the broken frame was shown');
        for (const m of secrets.slice(0, 2)) assert.ok(shown.includes(m), `message "${m}" accepted before is gone`);
        assert.equal(broken, 1);
      });

      await t.test('timing: send, receive, 100-message backlog', async () => {
        const { sent: s, received: r } = await backlog(relay.proxy, relay.proxy.conns.filter((c) => c.first === 'resume' || c.first === 'join').at(-1), alice, bob);
        const med = (xs) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];
        const p95 = (xs) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length * 0.95)];
        perf.sendMs = { median: med(s.map((x) => x.t1 - x.t0)), p95: p95(s.map((x) => x.t1 - x.t0)), n: s.length };
        perf.recvWorkerMs = { median: med(r.map((x) => x.worker)), p95: p95(r.map((x) => x.worker)), n: r.length };
        perf.backlog100Ms = Math.max(...r.map((x) => x.t1)) - Math.min(...r.map((x) => x.t0));
        writeFileSync(join(artifacts, `perf-${kind}.json`), JSON.stringify(perf, null, 2));
        t.diagnostic(`perf ${JSON.stringify(perf)}`);
        assert.equal(r.length, 100);
      });

      await t.test('the relay saw no plaintext, and frames only of the bucket sizes', async () => {
        assert.ok(relay.proxy.allMessages().length > 200);
        const sizes = assertCleanWire(relay.proxy, [...secrets, 'backlog message 1', secret]);
        t.diagnostic(`frame sizes seen: ${JSON.stringify(sizes)}`);
        // Protocol v2 with RSA-4096 display keys: identity announcements take 4 KiB, key packages and
        // commits 2 KiB, short messages (chat, timer, file header and acknowledgements) 1 KiB, file chunks
        // 48 KiB. Every kind of frame of the session was checked above.
        for (const dir of ['up', 'down']) {
          for (const size of [1024, 2048, 4096, 49152]) assert.ok(sizes[dir][size] > 0, `no ${dir} frame of ${size} bytes: the session did not cover it`);
        }
        assert.ok(sizes.up[1024] >= 100 && sizes.down[1024] >= 100);
        assert.ok(!relay.log().includes(parseInvite(new URL(invite).hash).room), 'room id in the relay log');
      });

      await t.test('gpg imports the exported key pair; a frame captured at the relay is no OpenPGP message for it', async () => {
        const bZip = readZip(await exportKey(bob, 'Bob-export1!'));
        const g = gpgHome();
        try {
          const files = (z, suffix) => [...z].filter(([n]) => n.endsWith(suffix)).map(([, d]) => d)[0];
          g.run(['--pinentry-mode', 'loopback', '--passphrase', 'Bob-export1!', '--import'], files(bZip, '-private.asc'));
          const bobConns = new Set(relay.proxy.conns.filter((c) => c.first === 'join' || c.first === 'resume').map((c) => c.index));
          const captured = binaryPayloads(relay.proxy, 'down', KIND_MESSAGE).filter((f) => bobConns.has(f.conn));
          assert.ok(captured.length > 100);
          writeFileSync(join(g.home, 'frame.bin'), decodePayload(new Uint8Array(captured.at(-1).payload)).body);
          assert.throws(() => g.run(['--pinentry-mode', 'loopback', '--passphrase', 'Bob-export1!', '--decrypt', join(g.home, 'frame.bin')]),
            'gpg decrypted a protocol v2 frame with the long-term key');
        } finally {
          g.done();
        }
      });

      await t.test('burn ends the room for everyone', async () => {
        await press(alice, '#burn');
        await Promise.all([alice.waitForSelector('#ended'), bob.waitForSelector('#ended')]);
        await shot(bob, `${kind}-burned`);
        const upAfter = relay.proxy.allMessages().filter((m) => m.dir === 'up' && m.opcode === 1).map((m) => JSON.parse(m.payload.toString()).t);
        assert.ok(upAfter.includes('burn'));
      });

      assert.deepEqual(alice.errors.filter((e) => !/WebSocket|websocket/.test(e)), [], 'console errors on alice\'s page');
    } finally {
      await b.close();
      await relay.stop();
    }
  });

  test(`${kind}: a relay that swaps or changes keys is caught`, { timeout: 600000 }, async (t) => {
    const relay = await startRelay();
    const b = await launch(kind);
    try {
      await t.test('a key announcement the relay forged is refused', async () => {
        const alice = await openPage(b, relay.url);
        await alice.select('#keytype', 'rsa');
        const invite = await createRoom(alice);
        const aliceConn = relay.proxy.conns.filter((c) => c.first === 'create').at(-1);
        // The relay does not know the invite secret: it can only send an identity sealed with another one.
        const room = parseInvite(new URL(invite).hash).room;
        const fake = await Identity.generate();
        const sealed = await sealIdentity(await inviteKey(randomBytes(32), room), room, { member: 2, pub: fake.pub });
        aliceConn.tamper = (p) => (kindOf(p) === KIND_IDENTITY ? withPayload(p, encodePayload(KIND_IDENTITY, sealed)) : null);
        const bob = await openPage(b, invite);
        await joinRoom(bob);
        await alice.waitForSelector('.problem');
        const problems = await alice.$$eval('.problem', (l) => l.map((e) => e.textContent));
        assert.ok(problems.some((p) => /swap keys/.test(p)), problems.join('\n'));
        assert.equal(await alice.$eval('#send', (e) => e.disabled), true, 'alice can send without a verified key');
        // Without bob's identity, alice (the committer) starts no epoch: bob cannot send either.
        assert.equal(await bob.$eval('#send', (e) => e.disabled), true, 'bob can send although no epoch was agreed');
        await shot(alice, `${kind}-forged-key`);
        const fromAlice = binaryPayloads(relay.proxy, 'up', KIND_MESSAGE).filter((f) => f.conn === aliceConn.index);
        assert.equal(fromAlice.length, 0, 'alice encrypted a message although no key was verified');
        await alice.close();
        await bob.close();
      });

      await t.test('a changed key blocks sending until the user decides', async () => {
        const alice = await openPage(b, relay.url);
        const invite = await createRoom(alice);
        const { room, secret } = parseInvite(new URL(invite).hash);
        const aliceConn = relay.proxy.conns.filter((c) => c.first === 'create').at(-1);
        const bob = await openPage(b, invite);
        // Bob takes the fast Curve25519 key (offered because WebCrypto has Ed25519 and X25519 here):
        // a room with mixed key types works.
        await bob.select('#keytype', 'curve25519');
        await joinRoom(bob);
        await Promise.all([ready(alice), ready(bob)]);
        await press(alice, '#e2e');
        await alice.waitForSelector('dialog#keys[open]');
        assert.match(await alice.$$eval('dialog#keys .key dd', (l) => l.map((e) => e.textContent).join('|')), /Curve25519/);
        await press(alice, '#keysclose');
        await say(bob, 'first message, key pinned');
        await sees(alice, 'first message, key pinned');
        // Someone holding the invite secret (here: the test) announces another identity for member 2.
        const other = await pgp.generateKeyPair({ type: 'curve25519', name: 'impostor' });
        const otherId = await Identity.generate();
        const sealed = await sealIdentity(await inviteKey(unb64u(secret), room), room, { member: 2, pub: otherId.pub, display: new TextEncoder().encode(other.toPublic().armor()) });
        let swapped = 0;
        aliceConn.tamper = (p) => {
          if (swapped || kindOf(p) !== KIND_MESSAGE) return null;
          swapped = Date.now();
          return withPayload(p, encodePayload(KIND_IDENTITY, sealed));
        };
        await say(bob, 'this frame gets replaced');
        await alice.waitForSelector('dialog#keychange[open]', { timeout: 60000 });
        await shot(alice, `${kind}-key-changed`);
        assert.equal(await alice.$eval('#newfp', (e) => e.textContent), pgp.fingerprint(other));
        assert.equal(await alice.$eval('#send', (e) => e.disabled), true);
        // Even with the form forced open, the crypto worker refuses to encrypt.
        await alice.evaluate(() => {
          for (const id of ['text', 'send']) document.getElementById(id).disabled = false;
          document.getElementById('text').value = 'must not leave';
          document.getElementById('composer').requestSubmit();
        });
        await alice.waitForFunction(() => [...document.querySelectorAll('.problem')].some((e) => /blocked/.test(e.textContent)), { timeout: 30000, polling: 100 });
        const fromAlice = binaryPayloads(relay.proxy, 'up', KIND_MESSAGE).filter((f) => f.conn === aliceConn.index && f.at >= swapped);
        assert.equal(fromAlice.length, 0, 'alice sent a message after the key changed');
        await alice.close();
        await bob.close();
      });

      await t.test('a replayed, a dropped and a v1 frame are each named, in Russian too', async () => {
        const alice = await openPage(b, relay.url);
        await alice.select('#keytype', 'curve25519');
        const invite = await createRoom(alice);
        const aliceConn = relay.proxy.conns.filter((c) => c.first === 'create').at(-1);
        const bob = await openPage(b, invite);
        await bob.select('#keytype', 'curve25519');
        await joinRoom(bob);
        await Promise.all([ready(alice), ready(bob)]);
        await press(alice, '#lang');
        let first = null;
        let n = 0;
        aliceConn.tamper = (p) => {
          if (kindOf(p) !== KIND_MESSAGE) return null;
          n++;
          if (n === 1) first = p;
          // The relay replays message 1's payload in place of message 2, under a fresh sequence number (the
          // connection layer already drops an entry whose number it has seen).
          if (n === 2) return withPayload(p, first.subarray(DELIVER_HEADER));
          if (n === 4) return withPayload(p, encodePayload(0x02, randomBytes(300))); // a v1 OpenPGP frame
          return null;
        };
        for (const m of ['one, delivered', 'two, replaced by a replay', 'three, after a gap', 'four, replaced by a v1 frame']) await say(bob, m);
        await sees(alice, 'three, after a gap');
        const problems = async () => alice.$$eval('.problem', (l) => l.map((e) => e.textContent));
        await alice.waitForFunction(() => document.querySelectorAll('.problem').length >= 3, { timeout: 30000, polling: 100 });
        const ps = (await problems()).join('\n');
        assert.match(ps, /повторно доставил данные от участника 2/, ps);
        assert.match(ps, /Не дошло сообщений от участника 2: 1/, ps);
        assert.match(ps, /старая версия страницы \(протокол v1\)/, ps);
        const shown = await alice.$$eval('.msg .text', (l) => l.map((e) => e.textContent));
        assert.deepEqual(shown, ['one, delivered', 'three, after a gap']);
        aliceConn.tamper = null;
        await alice.close();
        await bob.close();
      });

      await t.test('mixed RSA and Curve25519 keys: frames only of the bucket sizes', async () => {
        const sizes = assertCleanWire(relay.proxy, ['first message, key pinned', 'this frame gets replaced', 'must not leave']);
        t.diagnostic(`frame sizes seen: ${JSON.stringify(sizes)}`);
        assert.ok(sizes.up[1024] > 0, 'no Curve25519 key announcement (1 KiB) seen');
        assert.ok(sizes.up[4096] > 0, 'no RSA-4096 key announcement (4 KiB) seen');
      });
    } finally {
      await b.close();
      await relay.stop();
    }
  });
}

test('chromium: refusal outside a secure context, and the noscript message', { timeout: 300000 }, async () => {
  // insecure.test resolves to 127.0.0.1 inside Chromium only; http:// on a name that is not
  // loopback is not a secure context, so crypto.subtle is missing there, as on a plain-http site.
  const relay = await startRelay({ extraHosts: ['insecure.test'] });
  const b = await launch('chromium', { args: ['--host-resolver-rules=MAP insecure.test 127.0.0.1'] });
  try {
    const ctx = await b.browser.createBrowserContext();
    const page = await ctx.newPage();
    await page.setJavaScriptEnabled(false);
    await page.goto(relay.url);
    const txt = await page.$eval('noscript', (e) => e.textContent);
    assert.match(txt, /needs JavaScript/);
    await page.close();
    const p2 = await ctx.newPage();
    await p2.goto(`http://insecure.test:${relay.port}/`);
    assert.equal(await p2.evaluate(() => globalThis.isSecureContext), false);
    await p2.waitForSelector('#refused', { timeout: 30000 });
    const why = await p2.$eval('#refused', (e) => e.textContent);
    assert.match(why, /not a secure context/);
    assert.match(why, /crypto\.subtle/);
    await shot(p2, 'chromium-refused');
  } finally {
    await b.close();
    await relay.stop();
  }
});

test('chromium: account cookies never reach an anonymous room', { timeout: 300000 }, async () => {
  // A browser holding a stale ws_ticket (the relay restarted, or the ticket expired) and a session cookie
  // still creates an anonymous room: its socket declares itself anonymous, so the relay ignores the cookies.
  const relay = await startRelay();
  const b = await launch('chromium');
  try {
    const page = await openPage(b, relay.url);
    await page.setCookie(
      { name: 'ws_ticket', value: 'c3RhbGUtdGlja2V0', url: relay.url, path: '/ws' },
      { name: 'session', value: 'not.a.token', url: relay.url, path: '/' },
    );
    const invite = await createRoom(page);
    assert.match(invite, /#/);
    const socks = relay.proxy.conns;
    assert.ok(socks.length >= 1);
    for (const c of socks) {
      assert.equal(c.url, '/ws?anonymous=1');
      assert.match(c.cookie, /ws_ticket=/); // the browser did send the stale ticket: the relay ignored it
    }
  } finally {
    await b.close();
    await relay.stop();
  }
});
