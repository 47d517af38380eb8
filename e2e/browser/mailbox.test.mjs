// End-to-end: dialogs that work like a messenger (docs/accounts.md §Mailbox). Alice writes to bob while he is
// away, each message sealed with one of bob's one-time prekeys (docs/e2e.md §9); bob comes back to his browser
// later, sees the unread count, reads everything in order (a copy the relay replays is caught and shown), and
// alice sees her messages turn delivered. Afterwards bob's key file, its passphrase and everything in his
// browser's storage open none of the recorded items, while the storage from before he read opens them all. Then (in one browser only, to keep the run short) bob
// replaces his key while alice's dialog is open, and the relay is stopped and started again under alice.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, rmSync, mkdirSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startRelay, launch, openPage, shot, press, fill, say, sees, repo, exportZip } from './harness.mjs';
import * as pgp from '../../static/js/pgp.mjs';
import { decodePayload, KIND_MAIL, unb64u } from '../../static/js/proto.mjs';
import { parseItem, openItem } from '../../static/js/e2e-mailbox.mjs';
import { KeyPackage } from '../../static/js/e2e-keys.mjs';
import { hex } from '../../static/js/e2e-commit.mjs';

const SHOTS = process.env.CR_SHOTS === '1'; // also save the desktop and phone screenshots of docs/screenshots
const KINDS = (process.env.CR_BROWSERS ?? 'chromium,firefox').split(',').filter(Boolean);
// The longer scenarios run in one browser: the first one listed.
const EXTRA = KINDS[0];
const SCREENS = join(repo, 'docs', 'screenshots');

async function register(page, user, password) {
  if (!(await page.$('#registerscreen'))) await press(page, (await page.$('#toregister2')) ? '#toregister2' : '#toregister');
  await fill(page, '#regname', user);
  await fill(page, '#fullname', `${user[0].toUpperCase()}${user.slice(1)} Tester`);
  await fill(page, '#email', `${user}@example.org`);
  await fill(page, '#regpass', password);
  await press(page, '#registerdo');
  await page.waitForSelector('#loginscreen', { timeout: 60000 });
}

async function login(page, user, password) {
  await fill(page, '#loginname', user);
  await fill(page, '#loginpass', password);
  await press(page, '#logindo');
}

// makeKey makes a Curve25519 key (fast without a JIT) when the browser offers it.
async function makeKey(page, passphrase) {
  await page.waitForSelector('#keysetup', { timeout: 60000 });
  await page.$eval('#acctkeytype', (s) => {
    if ([...s.options].some((o) => o.value === 'curve25519')) s.value = 'curve25519';
  });
  await fill(page, '#newpass', passphrase);
  await press(page, '#generate');
  await page.waitForSelector('#keyready', { timeout: 180000 });
}

async function openDialogWith(page, user) {
  await page.waitForSelector('#mainscreen', { timeout: 60000 });
  const listed = await page.$(`#dialogs button[data-user="${user}"]`);
  if (listed) await press(page, `#dialogs button[data-user="${user}"]`);
  else {
    await fill(page, '#search', user.slice(0, 2));
    await press(page, `#results button[data-user="${user}"]`);
  }
  await page.waitForSelector('#room #text:not([disabled]), .problem, dialog#keychange[open]', { timeout: 60000 });
}

// docShots saves the page at desktop (1400×900) and phone (412×915) sizes for the docs.
async function docShots(page, name) {
  mkdirSync(SCREENS, { recursive: true });
  for (const [w, h, what] of [[1400, 900, 'desktop'], [412, 915, 'phone']]) {
    await page.setViewport({ width: w, height: h });
    await page.evaluate(() => {
      const log = document.querySelector('#log');
      if (log) log.scrollTop = log.scrollHeight;
    });
    await page.screenshot({ path: join(SCREENS, `${name}-${what}.png`) });
  }
  await page.setViewport({ width: 1000, height: 900 });
}

// states returns the state of each of this page's own bubbles, in order.
const states = (page) => page.$$eval('#log .msg.mine', (l) => l.map((e) => e.dataset.state || ''));

async function waitStates(page, want, timeout = 60000) {
  try {
    await page.waitForFunction((w) => JSON.stringify([...document.querySelectorAll('#log .msg.mine')].map((e) => e.dataset.state || '')) === JSON.stringify(w),
      { timeout, polling: 100 }, want);
  } catch (e) {
    throw new Error(`states ${JSON.stringify(await states(page))}, want ${JSON.stringify(want)}: ${e.message}`);
  }
}

// theirs returns the received bubbles' texts (a file: its name), in order.
const theirs = (page) => page.$$eval('#log .msg.theirs', (l) => l.map((e) => e.querySelector('.text')?.textContent ?? e.querySelector('a.save')?.getAttribute('download') ?? ''));

// storage returns every value in the page's localStorage and sessionStorage.
const storage = (page) => page.evaluate(() => [localStorage, sessionStorage].flatMap((st) => Object.keys(st).map((k) => st.getItem(k))));

// openable counts the recorded mailbox items (base64 payloads) that the private key and the storage values
// open: every value that decrypts with the key as a store of prekeys (e2e-mailworker.mjs) gives its private
// halves, and each item is tried with the prekey it names. Signatures are not checked: this is about who can read.
async function openable(items, values, key) {
  const halves = new Map(); // prekey hash -> {raw, x, kem}
  for (const v of values) {
    try {
      const message = await pgp.openpgp.readMessage({ binaryMessage: unb64u(v), config: pgp.CONFIG });
      const { data } = await pgp.openpgp.decrypt({ message, decryptionKeys: key, format: 'binary', config: pgp.CONFIG });
      for (const k of JSON.parse(new TextDecoder().decode(data)).keys) {
        const raw = unb64u(k.raw);
        halves.set(hex(await new KeyPackage(raw).hash()), { raw, x: unb64u(k.x), kem: unb64u(k.kem) });
      }
    } catch {
      // not a store of prekeys for this key
    }
  }
  let n = 0;
  for (const b64 of items) {
    const p = decodePayload(Uint8Array.from(Buffer.from(b64, 'base64')));
    assert.equal(p.kind, KIND_MAIL, 'a mailbox item is not a v2 item');
    const item = await parseItem(p.body, 'bob', { verify: async () => true });
    const h = halves.get(hex(item.prekeyHash));
    if (!h) continue;
    try {
      await openItem(item, 'bob', new KeyPackage(h.raw), { x: h.x.slice(), kem: h.kem.slice() });
      n++;
    } catch {
      // not with these keys
    }
  }
  return n;
}

// mailboxPosts counts the requests that left something in the mailbox.
const mailboxPosts = (relay) => relay.proxy.requests.filter((r) => r.method === 'POST' && /^\/api\/mailbox\/[^/]+\?/.test(r.url)).length;

for (const kind of KINDS) {
  test(`${kind}: messages to a contact who is away wait, are told, read once, and turn delivered`, { timeout: 900000 }, async (t) => {
    const relay = await startRelay();
    const b = await launch(kind);
    let b2 = null;
    const dir = mkdtempSync(join(tmpdir(), 'crmail-'));
    try {
      const alice = await openPage(b, relay.url);
      const bobFirst = await openPage(b, relay.url);
      const secret = randomBytes(4).toString('hex');
      const texts = [`first while away ${secret}`, `third, after the file ${secret}`];
      const fileName = `notes-${secret}.txt`;
      let bobZip;
      let bob;

      await t.test('bob makes his key, exports it and leaves', async () => {
        await register(bobFirst, 'bob', 'Bob-pass1!');
        await login(bobFirst, 'bob', 'Bob-pass1!');
        await makeKey(bobFirst, 'Bob-key-pass1!');
        bobZip = await exportZip(bobFirst, 'Bob-zip-pass1!');
        await press(bobFirst, '#continue');
        await press(bobFirst, '#logout');
        await bobFirst.waitForSelector('#loginscreen');
        await bobFirst.goto('about:blank'); // his browser keeps its storage: the private halves of his prekeys
      });

      await t.test('alice writes three messages, one a file; each waits in the relay as sent', async () => {
        await register(alice, 'alice', 'Alice-pass1!');
        await login(alice, 'alice', 'Alice-pass1!');
        await makeKey(alice, 'Alice-key-pass1!');
        await press(alice, '#continue');
        await openDialogWith(alice, 'bob');
        // The composer is live and says where the message goes.
        await alice.waitForSelector('#routenote[data-route="route_mailbox"]', { timeout: 30000 });
        assert.match(await alice.$eval('#routenote', (e) => e.textContent), /away.*restart of the relay loses it/);
        await say(alice, texts[0]);
        const filePath = join(dir, fileName);
        writeFileSync(filePath, `the file's content ${secret}\n`.repeat(100));
        const input = await alice.$('#file');
        await input.uploadFile(filePath);
        await alice.waitForSelector('.msg.mine.file[data-done="sent"]', { timeout: 60000 });
        await say(alice, texts[1]);
        await waitStates(alice, ['sent', 'sent', 'sent']);
        if (SHOTS && kind === 'chromium') await docShots(alice, 'mailbox-sent');
        assert.equal(await alice.$$eval('.msg.mine .state', (l) => l.filter((e) => /waiting in the relay/.test(e.textContent)).length), 3);
      });

      let recorded = [];
      let storedBefore = [];
      await t.test('bob comes back to his browser, sees the unread count and reads all three in order; a replayed item is caught and shown', async () => {
        bob = bobFirst;
        await bob.goto(relay.url, { waitUntil: 'load' });
        await bob.waitForSelector('body[data-ready="yes"]', { timeout: 60000 });
        if (await bob.$('#tologin')) await press(bob, '#tologin');
        await login(bob, 'bob', 'Bob-pass1!');
        await bob.waitForSelector('#unlockscreen', { timeout: 60000 });
        await fill(bob, '#unlockpass', 'Bob-key-pass1!');
        await press(bob, '#unlockdo');
        await bob.waitForSelector('#dialogs button[data-user="alice"] .unread', { timeout: 60000 });
        assert.equal(await bob.$eval('#dialogs button[data-user="alice"] .unread', (e) => e.textContent), '3');
        assert.match(await bob.title(), /^\(3\) /);
        if (SHOTS && kind === 'chromium') await docShots(bob, 'mailbox-unread');
        await shot(bob, `${kind}-mailbox-unread`);
        storedBefore = await storage(bob);
        // Play a relay that records every item it hands out and hands the first one out twice.
        relay.proxy.httpTamper = (req) => (req.method === 'GET' && req.url === '/api/mailbox/alice' ? (text) => {
          const j = JSON.parse(text);
          if (j.items.length && !recorded.length) {
            recorded = j.items.map((it) => it.data);
            j.items.push({ ...j.items[0], id: 'replayed-by-the-relay' });
          }
          return JSON.stringify(j);
        } : null);
        await openDialogWith(bob, 'alice');
        await sees(bob, texts[1]);
        assert.deepEqual(await theirs(bob), [texts[0], fileName, texts[1]]);
        await bob.waitForFunction(() => [...document.querySelectorAll('.problem')].some((e) => /used a one-time key that was used before/.test(e.textContent)), { timeout: 60000, polling: 100 });
        assert.equal(recorded.length, 4, 'two messages, a file header and its chunk');
        relay.proxy.httpTamper = null;
        assert.doesNotMatch(await bob.title(), /^\(/, 'the title still counts unread messages');
      });

      await t.test('forward secrecy: after bob read, his key file, its passphrase and all his browser storage open no recorded item', async () => {
        assert.equal(recorded.length, 4, 'the relay recorded no items');
        const key = await pgp.importZip(bobZip, 'Bob-zip-pass1!');
        // The control: the storage from before he read holds the private halves, and opens every item.
        assert.equal(await openable(recorded, storedBefore, key), recorded.length, 'the storage from before the read does not open the items: the test cannot tell');
        await bob.waitForFunction(() => Object.keys(localStorage).some((k) => k.startsWith('cleanrelay.prekeys.')));
        assert.equal(await openable(recorded, await storage(bob), key), 0, 'an item opens after it was read');
      });

      await t.test('alice sees them turn delivered', async () => {
        await waitStates(alice, ['delivered', 'delivered', 'delivered']);
        if (SHOTS && kind === 'chromium') await docShots(alice, 'mailbox-states');
        await shot(alice, `${kind}-mailbox-delivered`);
      });

      await t.test('read once: the relay holds nothing more, and a reopened dialog shows nothing again', async () => {
        await press(bob, '#back');
        await bob.waitForSelector('#mainscreen');
        assert.equal(await bob.$eval('#dialogs button[data-user="alice"]', (e) => e.dataset.unread ?? '0'), '0');
        await openDialogWith(bob, 'alice');
        await bob.waitForSelector('#status[data-ready="yes"]');
        await new Promise((r) => setTimeout(r, 1500));
        assert.deepEqual(await theirs(bob), []);
        // Both are in the room now: a message goes as a frame, and turns delivered too.
        const live = `live ${secret}`;
        await alice.waitForSelector('#routenote[data-route="room"]', { timeout: 30000 });
        await say(alice, live);
        await sees(bob, live);
        await waitStates(alice, ['delivered', 'delivered', 'delivered', 'delivered']);
      });

      if (kind !== EXTRA) return;

      await t.test('bob replaces his key while alice\'s dialog is open: alice is blocked at once, then accepts', async () => {
        await press(bob, '#back');
        await bob.waitForSelector('#mainscreen');
        await alice.waitForSelector('#routenote[data-route="route_mailbox"]', { timeout: 30000 });
        const postsBefore = mailboxPosts(relay);
        await press(bob, '#mykey');
        await press(bob, '#mykeydialog button.danger');
        await makeKey(bob, 'Bob-key-pass2!');
        // Alice's composer is blocked, with the warning, without a Back and reopen.
        await alice.waitForSelector('dialog#keychange[open]', { timeout: 30000 });
        assert.equal(await alice.$eval('#send', (e) => e.disabled), true);
        assert.equal(await alice.$eval('#routenote', (e) => e.dataset.route), 'route_blocked');
        // Nothing can be sent to the old key: the form refuses, and nothing reached the relay.
        const bubbles = (await states(alice)).length;
        await alice.$eval('#text', (e) => {
          e.disabled = false;
          e.value = 'to the old key';
        });
        await alice.$eval('#composer', (f) => f.requestSubmit());
        await new Promise((r) => setTimeout(r, 1000));
        assert.equal((await states(alice)).length, bubbles, 'a message was sent while blocked');
        assert.equal(mailboxPosts(relay), postsBefore, 'something reached the mailbox while blocked');
        await shot(alice, `${kind}-mailbox-keychange`);
        assert.notEqual(await alice.$eval('#newfp', (e) => e.textContent), '');
        await press(alice, '#kctrust');
        await alice.waitForSelector('#send:not([disabled])', { timeout: 30000 });
        const after = `for the new key ${secret}`;
        await say(alice, after);
        await press(bob, '#continue');
        await openDialogWith(bob, 'alice');
        await sees(bob, after);
        await waitStates(alice, ['delivered', 'delivered', 'delivered', 'delivered', 'delivered']);
      });

      await t.test('a message typed while the relay is down fails, and Retry sends it after a restart', async () => {
        await press(bob, '#back');
        await bob.waitForSelector('#mainscreen');
        await alice.waitForSelector('#routenote[data-route="route_mailbox"]', { timeout: 30000 });
        await relay.crash();
        const lost = `typed while the relay was down ${secret}`;
        await say(alice, lost);
        await alice.waitForFunction(() => document.querySelector('#log .msg.mine:last-of-type')?.dataset.state === 'failed', { timeout: 60000, polling: 100 });
        await alice.waitForSelector('#log .msg.mine[data-state="failed"] button.retry');
        await shot(alice, `${kind}-mailbox-failed`);
        if (SHOTS && kind === 'chromium') await docShots(alice, 'mailbox-failed');
        // A restart forgets everything: accounts, keys, dialogs. Both register again with the keys they hold.
        await relay.resume();
        await alice.waitForSelector('#mainscreen, #loginscreen', { timeout: 120000 });
        for (const [page, user, pass, keyPass] of [[alice, 'alice', 'Alice-pass1!', 'Alice-key-pass1!'], [bob, 'bob', 'Bob-pass1!', 'Bob-key-pass2!']]) {
          if (await page.$('#mainscreen')) await press(page, '#logout');
          await page.waitForSelector('#loginscreen', { timeout: 60000 });
          await register(page, user, pass);
          await login(page, user, pass);
          await page.waitForSelector('#unlockscreen', { timeout: 60000 });
          await fill(page, '#unlockpass', keyPass);
          await press(page, '#unlockdo');
          await page.waitForSelector('#mainscreen', { timeout: 60000 });
        }
        await openDialogWith(alice, 'bob');
        await alice.waitForSelector('#log .msg.mine[data-state="failed"] button.retry', { timeout: 30000 });
        await press(alice, '#log .msg.mine[data-state="failed"] button.retry');
        await alice.waitForFunction((v) => [...document.querySelectorAll('#log .msg.mine')].some((e) => e.dataset.state === 'sent' && e.textContent.includes(v)), { timeout: 60000, polling: 100 }, lost);
        await bob.waitForSelector('#dialogs button[data-user="alice"] .unread', { timeout: 60000 });
        await openDialogWith(bob, 'alice');
        await sees(bob, lost);
        await alice.waitForFunction((v) => [...document.querySelectorAll('#log .msg.mine')].some((e) => e.dataset.state === 'delivered' && e.textContent.includes(v)), { timeout: 60000, polling: 100 }, lost);
      });

      for (const p of [alice, bob]) assert.deepEqual(p.errors.filter((e) => !/Failed to load resource|NetworkError|net::ERR|WebSocket|can.t establish a connection to the server at ws:/.test(e)), []);
    } finally {
      await b.close();
      await b2?.close();
      await relay.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
}
