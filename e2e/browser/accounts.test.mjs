// End-to-end: two users register, make keys, find each other and chat in a dialog through a real
// relay with its accounts API (docs/accounts.md); reload and unlock; export the key pair and
// import it into a fresh browser profile, which then reads a new message.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startRelay, launch, openPage, shot, press, fill, say, sees, assertCleanWire, exportZip, frames } from './harness.mjs';
import { KIND_PGP, KIND_KEY } from '../../static/js/proto.mjs';
import * as pgp from '../../static/js/pgp.mjs';

const KINDS = (process.env.CR_BROWSERS ?? 'chromium,firefox').split(',').filter(Boolean);

async function registerAndLogin(page, user, password) {
  await press(page, '#toregister');
  await fill(page, '#regname', user);
  await fill(page, '#fullname', `${user[0].toUpperCase()}${user.slice(1)} Tester`);
  await fill(page, '#email', `${user}@example.org`);
  await fill(page, '#regpass', 'short');
  await press(page, '#registerdo');
  await page.waitForFunction(() => /upper-case letter/.test(document.querySelector('#regpass-error')?.textContent || ''), { polling: 100 });
  await fill(page, '#regpass', password);
  await press(page, '#registerdo');
  await page.waitForSelector('#loginscreen', { timeout: 60000 });
  assert.equal(await page.$eval('#loginname', (e) => e.value), user);
  await fill(page, '#loginpass', password);
  await press(page, '#logindo');
}

async function makeKey(page, passphrase) {
  await page.waitForSelector('#keysetup', { timeout: 60000 });
  await fill(page, '#newpass', passphrase);
  await press(page, '#generate');
  await page.waitForSelector('#keyready', { timeout: 180000 });
}

async function openDialogWith(page, prefix, user) {
  await page.waitForSelector('#mainscreen', { timeout: 60000 });
  await fill(page, '#search', prefix);
  await press(page, `#results button[data-user="${user}"]`);
  await page.waitForSelector('#room, .problem', { timeout: 60000 });
  const problems = await page.$$eval('.problem', (l) => l.map((e) => e.textContent));
  assert.deepEqual(problems, [], 'opening the dialog failed');
}

async function ready(page) {
  await page.waitForSelector('#status[data-ready="yes"]', { timeout: 60000 });
}

async function fingerprints(page) {
  await press(page, '#e2e');
  await page.waitForSelector('dialog#keys[open]');
  const fps = await page.$$eval('dialog#keys .fp', (l) => l.map((e) => e.textContent));
  await press(page, '#keysclose');
  return fps;
}

for (const kind of KINDS) {
  test(`${kind}: accounts, keys and a dialog`, { timeout: 900000 }, async (t) => {
    const relay = await startRelay();
    const b = await launch(kind);
    let b2 = null;
    const dir = mkdtempSync(join(tmpdir(), 'cracct-'));
    const secrets = [];
    try {
      const alice = await openPage(b, relay.url);
      const bob = await openPage(b, relay.url);
      let aliceZip;
      await t.test('register, log in, make and publish a key, export it', async () => {
        await registerAndLogin(alice, 'alice', 'Alice-pass1!');
        await makeKey(alice, 'Alice-key-pass1!');
        await shot(alice, `${kind}-acct-keyready`);
        aliceZip = await exportZip(alice, 'Alice-zip-pass1!');
        assert.equal(aliceZip.subarray(0, 4).toString('hex'), '504b0304');
        await press(alice, '#continue');
        await registerAndLogin(bob, 'bob', 'Bob-pass1!');
        await makeKey(bob, 'Bob-key-pass1!');
        await press(bob, '#continue');
      });

      await t.test('a dialog bob opens shows on alice\'s main screen without a reload', async () => {
        await alice.waitForSelector('#mainscreen #dialogs[data-live="yes"]', { timeout: 60000 });
        assert.equal(await alice.$('#dialogs button[data-user="bob"]'), null, 'bob is in alice\'s dialogs already');
        await openDialogWith(bob, 'al', 'alice');
        await alice.waitForSelector('#dialogs button[data-user="bob"] .badge', { timeout: 30000 });
        assert.equal(await alice.$eval('#dialogs button[data-user="bob"] .badge', (e) => e.textContent), 'new');
        await shot(alice, `${kind}-acct-incoming`);
      });

      await t.test('find each other, open the dialog, chat both ways', async () => {
        await press(alice, '#dialogs button[data-user="bob"]');
        await alice.waitForSelector('#room', { timeout: 60000 });
        await Promise.all([ready(alice), ready(bob)]);
        const m1 = `dialog hello from alice ${randomBytes(5).toString('hex')}`;
        const m2 = `ответ от bob ${randomBytes(5).toString('hex')}`;
        secrets.push(m1, m2);
        await say(alice, m1);
        await sees(bob, m1);
        await say(bob, m2);
        await sees(alice, m2);
        assert.equal(await alice.$eval('#e2e', (e) => e.textContent), 'End-to-end encrypted');
        const a = await fingerprints(alice);
        const bb = await fingerprints(bob);
        assert.equal(a[1], bb[0], 'alice sees bob\'s real key');
        assert.equal(bb[1], a[0], 'bob sees alice\'s real key');
        await shot(alice, `${kind}-acct-dialog`);
      });

      await t.test('a dropped dialog socket comes back without a new key proof', async () => {
        const proofs = () => relay.proxy.requests.filter((r) => r.url === '/api/session/proof').length;
        const before = proofs();
        const aliceConn = relay.proxy.conns.filter((c) => c.first === 'join').at(-1);
        relay.proxy.drop(aliceConn);
        await alice.waitForFunction(() => [...document.querySelectorAll('.system')].some((e) => /reconnected/.test(e.textContent)), { timeout: 60000, polling: 100 });
        const m = `after the drop ${randomBytes(5).toString('hex')}`;
        secrets.push(m);
        await say(alice, m);
        await sees(bob, m);
        assert.equal(proofs(), before, 'the reconnect signed a new session challenge');
        // Presence lines name the peer of a dialog, never "Member N".
        await bob.waitForFunction(() => /alice is back/.test(document.querySelector('#log').textContent), { timeout: 60000, polling: 100 });
        assert.doesNotMatch(await bob.$eval('#log', (e) => e.textContent), /Member \d/);
      });

      await t.test('reload asks for the passphrase, then the dialog goes on', async () => {
        await alice.reload({ waitUntil: 'load' });
        // Sealed in the epoch the reload destroyed: alice is told it cannot be read there, and bob sends it again.
        const during = `while alice reloads ${randomBytes(5).toString('hex')}`;
        secrets.push(during);
        await say(bob, during);
        await alice.waitForSelector('#unlockscreen', { timeout: 60000 });
        await fill(alice, '#unlockpass', 'wrong-Pass1!');
        await press(alice, '#unlockdo');
        await alice.waitForFunction(() => /Wrong passphrase/.test(document.querySelector('#formerror')?.textContent || ''), { polling: 100, timeout: 60000 });
        await fill(alice, '#unlockpass', 'Alice-key-pass1!');
        await press(alice, '#unlockdo');
        await alice.waitForSelector('#mainscreen', { timeout: 60000 });
        await press(alice, '#dialogs button[data-user="bob"]');
        await ready(alice);
        await alice.waitForFunction(() => /can no longer be read here/.test(document.querySelector('#log').textContent), { timeout: 60000, polling: 100 });
        await sees(alice, during);
        const m = `after reload ${randomBytes(5).toString('hex')}`;
        secrets.push(m);
        await say(bob, m);
        await sees(alice, m);
      });

      await t.test('import the exported key into a fresh browser profile and read a new message', async () => {
        await press(alice, '#back');
        await alice.waitForSelector('#mainscreen');
        b2 = await launch(kind);
        const fresh = await openPage(b2, relay.url);
        await press(fresh, '#tologin');
        await fill(fresh, '#loginname', 'alice');
        await fill(fresh, '#loginpass', 'Alice-pass1!');
        await press(fresh, '#logindo');
        await fresh.waitForSelector('#keysetup', { timeout: 60000 });
        const zipPath = join(dir, 'alice-key.zip');
        writeFileSync(zipPath, aliceZip);
        const input = await fresh.$('#importfile');
        await input.uploadFile(zipPath);
        await fill(fresh, '#importpass', 'Alice-zip-pass1!');
        await press(fresh, '#importdo');
        await openDialogWith(fresh, 'bo', 'bob');
        await ready(fresh);
        await bob.waitForSelector('#status[data-ready="yes"]');
        const m = `for the imported key ${randomBytes(5).toString('hex')}`;
        secrets.push(m);
        await say(bob, m);
        await sees(fresh, m);
        await shot(fresh, `${kind}-acct-imported`);
      });

      await t.test('a key the relay swaps in the directory raises a blocking warning', async () => {
        await press(bob, '#back');
        await bob.waitForSelector('#mainscreen');
        const fake = await pgp.generateKeyPair({ type: 'curve25519', name: 'alice', email: 'alice@example.org' });
        const fakeArmored = fake.toPublic().armor();
        relay.proxy.httpTamper = (req) => (req.url === '/api/users/alice/key'
          ? (body) => {
            const j = JSON.parse(body);
            j.key.armored = fakeArmored;
            j.key.fingerprint = fake.getFingerprint().toUpperCase();
            return JSON.stringify(j);
          }
          : null);
        const framesBefore = relay.proxy.allMessages().length;
        await fill(bob, '#search', 'al');
        await press(bob, '#results button[data-user="alice"]');
        await bob.waitForSelector('dialog#keychange[open]', { timeout: 60000 });
        assert.equal(await bob.$eval('#newfp', (e) => e.textContent), pgp.fingerprint(fake));
        await shot(bob, `${kind}-acct-keychange`);
        assert.equal(await bob.$('#room'), null, 'the dialog opened despite the changed key');
        // Nothing went out on any WebSocket after the swap: no message was encrypted to the fake key.
        const after = relay.proxy.allMessages().slice(framesBefore).filter((m) => m.dir === 'up' && m.opcode === 2);
        assert.equal(after.length, 0);
        await press(bob, '#kccancel');
        relay.proxy.httpTamper = null;
      });

      await t.test('a forgotten passphrase makes a new key; the peer is warned and can trust it', async () => {
        await alice.reload({ waitUntil: 'load' });
        await alice.waitForSelector('#unlockscreen', { timeout: 60000 });
        await press(alice, '#forgot'); // the warning is a confirm(), accepted by the harness
        await makeKey(alice, 'Alice-new-pass2!');
        const newFp = await alice.$eval('#keyready .fp', (e) => e.textContent);
        await press(alice, '#continue');
        await fill(bob, '#search', 'al');
        await press(bob, '#results button[data-user="alice"]');
        await bob.waitForSelector('dialog#keychange[open]', { timeout: 60000 });
        assert.equal(await bob.$eval('#newfp', (e) => e.textContent), newFp);
        await press(bob, '#kctrust');
        await bob.waitForSelector('#room', { timeout: 60000 });
        await press(alice, '#dialogs button[data-user="bob"]');
        await Promise.all([ready(alice), ready(bob)]);
        const m = `to the new key ${randomBytes(5).toString('hex')}`;
        secrets.push(m);
        await say(bob, m);
        await sees(alice, m);
      });

      await t.test('the relay saw no plaintext, and frames only of the bucket sizes', async () => {
        assert.ok(relay.proxy.allMessages().length > 10);
        const sizes = assertCleanWire(relay.proxy, [...secrets, 'Alice Tester', 'alice@example.org', 'Bob Tester']);
        t.diagnostic(`frame sizes seen: ${JSON.stringify(sizes)}`);
        // Dialogs carry no key announcements (keys come from the directory) and speak protocol v2: a chat
        // message is a 1 KiB frame, and no v1 frame goes through the room.
        assert.ok(sizes.up[1024] >= secrets.length && sizes.down[1024] >= secrets.length, 'fewer frames than messages');
        const kinds = new Set(frames(relay.proxy).map((f) => f.kind));
        assert.ok(!kinds.has(KIND_PGP) && !kinds.has(KIND_KEY), `v1 frames in the dialog: kinds ${[...kinds]}`);
      });
    } finally {
      if (b2) await b2.close();
      await b.close();
      await relay.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
}
