// End-to-end: the mailbox between a browser account and a terminal account (`cleanrelay chat --json --login`)
// through a real relay (docs/e2e.md §9). The terminal publishes its one-time prekeys at login (their private
// halves in a file beside its key's ZIP, encrypted to its account key) and leaves; the browser's message to
// the absent terminal user is sealed with one of them; the terminal reads it at its next login. Then the
// browser's user leaves the dialog, and the terminal's message to her goes to the mailbox, sealed with one of
// the browser's prekeys, and shows when she opens the dialog again. Last, bob logs in on a browser too: his
// browser takes over the mailbox (it publishes its own prekeys over the terminal's), and an item sealed with
// the terminal's prekey that waits is told in that browser and left at the relay for the terminal, which
// still reads it; alice's next message is sealed with the browser's prekeys and read there.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startRelay, launch, openPage, press, fill, say, sees, shot } from './harness.mjs';
import { Terminal } from './terminal.mjs';

const KINDS = (process.env.CR_BROWSERS ?? 'firefox').split(',').filter(Boolean);
const BOB = { CLEANRELAY_PASSWORD: 'Bob-term-pass1!', CLEANRELAY_KEY_PASSPHRASE: 'Bob-zip-pass1!' };

async function register(url, username, password) {
  const r = await fetch(new URL('/api/register', url), { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ username, full_name: `${username} Tester`, password }) });
  assert.equal(r.status, 201, `register ${username}`);
}

// newKey makes a Curve25519 key where the browser offers it (fast without a JIT).
async function newKey(page, passphrase) {
  await page.waitForSelector('#keysetup', { timeout: 60000 });
  await page.$eval('#acctkeytype', (s) => {
    if ([...s.options].some((o) => o.value === 'curve25519')) s.value = 'curve25519';
  });
  await fill(page, '#newpass', passphrase);
  await press(page, '#generate');
  await page.waitForSelector('#keyready', { timeout: 180000 });
  await press(page, '#continue');
  await page.waitForSelector('#mainscreen', { timeout: 60000 });
}

async function login(page, user, password) {
  if (await page.$('#tologin')) await press(page, '#tologin');
  await fill(page, '#loginname', user);
  await fill(page, '#loginpass', password);
  await press(page, '#logindo');
}

async function openWith(page, user) {
  await page.waitForSelector('#mainscreen', { timeout: 60000 });
  const listed = await page.$(`#dialogs button[data-user="${user}"]`);
  if (listed) await press(page, `#dialogs button[data-user="${user}"]`);
  else {
    await fill(page, '#search', user.slice(0, 2));
    await press(page, `#results button[data-user="${user}"]`);
  }
  await page.waitForSelector('#room', { timeout: 60000 });
}

const mailboxPosts = (relay) => relay.proxy.requests.filter((r) => r.method === 'POST' && /^\/api\/mailbox\/[^/]+\?/.test(r.url)).length;

for (const kind of KINDS) {
  test(`the mailbox between a browser and a terminal account (${kind})`, { timeout: 900000 }, async (t) => {
    const relay = await startRelay();
    const b = await launch(kind);
    let b2 = null;
    const dir = mkdtempSync(join(tmpdir(), 'crtermmail-'));
    const zip = join(dir, 'bob.zip');
    const terms = [];
    const bob = (args) => {
      const term = new Terminal(['--login', 'bob', ...args, relay.url, '@alice'], dir, BOB);
      terms.push(term);
      return term;
    };
    const secret = randomBytes(4).toString('hex');
    const toTerm = `while you were away, terminal ${secret}`;
    const toBrowser = `and back to the browser ${secret}`;
    const forTerm = `for the terminal's prekey ${secret}`;
    const forBrowser = `for bob's browser now ${secret}`;
    try {
      const alice = await openPage(b, relay.url);
      await t.test('the terminal publishes prekeys and leaves; the browser\'s message waits for it, and it reads it at its next login', async () => {
        await register(relay.url, 'alice', 'Alice-pass1!');
        await register(relay.url, 'bob', BOB.CLEANRELAY_PASSWORD);
        await login(alice, 'alice', 'Alice-pass1!');
        await newKey(alice, 'Alice-key-pass1!');
        let term = bob(['--key-type', 'curve25519', '--export', zip]);
        await term.wait((e) => e.type === 'exported', 'the ZIP', 120000);
        await term.wait((e) => e.type === 'state', 'the dialog');
        assert.ok(existsSync(`${zip}.prekeys`), 'no prekeys file beside the ZIP');
        term.send({ cmd: 'leave' });
        assert.equal(await term.exited, 0);

        await openWith(alice, 'bob');
        await alice.waitForSelector('#routenote[data-route="route_mailbox"]', { timeout: 30000 });
        assert.match(await alice.$eval('#routenote', (e) => e.textContent), /only on the device bob logged in with last/);
        const posts = mailboxPosts(relay);
        await say(alice, toTerm);
        await alice.waitForFunction(() => [...document.querySelectorAll('.msg.mine .state')].some((e) => /waiting in the relay/.test(e.textContent)), { timeout: 60000, polling: 100 });
        assert.equal(mailboxPosts(relay), posts + 1, 'the message did not go to the mailbox');
        assert.deepEqual(await alice.$$eval('.problem', (l) => l.map((e) => e.textContent)), []);

        term = bob(['--key', zip]);
        const m = await term.wait((e) => e.type === 'message', 'the browser\'s message from the mailbox', 120000);
        assert.equal(m.text, toTerm);
        assert.equal(m.mailbox, true);
        assert.equal(m.unverified, undefined, 'the browser\'s item did not verify with the pinned key');
        term.send({ cmd: 'leave' });
        assert.equal(await term.exited, 0);
        assert.deepEqual(term.events.filter((e) => e.type === 'problem'), [], 'the terminal told a problem');
      });

      await t.test('the terminal\'s message to the absent browser user goes to the mailbox and shows when she opens the dialog', async () => {
        await press(alice, '#back');
        await alice.waitForSelector('#mainscreen', { timeout: 60000 });
        const term = bob(['--key', zip]);
        await term.wait((e) => e.type === 'state', 'the dialog');
        const posts = mailboxPosts(relay);
        term.send({ cmd: 'send', text: toBrowser });
        const s = await term.wait((e) => e.type === 'sent', 'the message sent', 120000);
        assert.equal(s.mailbox, true, 'the message did not go to the mailbox');
        assert.equal(mailboxPosts(relay), posts + 1);
        term.send({ cmd: 'leave' });
        assert.equal(await term.exited, 0);
        await alice.waitForSelector('#dialogs button[data-user="bob"] .unread', { timeout: 60000 });
        await openWith(alice, 'bob');
        await sees(alice, toBrowser);
        await shot(alice, `${kind}-terminal-mailbox`);
        assert.deepEqual(await alice.$$eval('.problem', (l) => l.map((e) => e.textContent)), []);
        await press(alice, '#back');
        await alice.waitForSelector('#mainscreen', { timeout: 60000 });
      });

      await t.test('bob logs in on a browser: it takes over his mailbox, and leaves the item sealed for his terminal at the relay', async () => {
        // The terminal's prekeys are at the relay: alice's next message is sealed with one of them.
        await openWith(alice, 'bob');
        await alice.waitForSelector('#routenote[data-route="route_mailbox"]', { timeout: 30000 });
        await say(alice, forTerm);
        await alice.waitForFunction(() => [...document.querySelectorAll('.msg.mine .state')].filter((e) => /waiting in the relay/.test(e.textContent)).length === 2, { timeout: 60000, polling: 100 });
        await press(alice, '#back');
        await alice.waitForSelector('#mainscreen', { timeout: 60000 });
        // Bob's browser (a profile of its own): his key from the terminal's ZIP.
        b2 = await launch(kind);
        const bobPage = await openPage(b2, relay.url);
        await login(bobPage, 'bob', BOB.CLEANRELAY_PASSWORD);
        await bobPage.waitForSelector('#keysetup', { timeout: 60000 });
        await (await bobPage.$('#importfile')).uploadFile(zip);
        await fill(bobPage, '#importpass', BOB.CLEANRELAY_KEY_PASSPHRASE);
        await press(bobPage, '#importdo');
        await bobPage.waitForSelector('#mainscreen', { timeout: 120000 });
        await openWith(bobPage, 'alice');
        await bobPage.waitForFunction(() => [...document.querySelectorAll('.problem')].some((e) => /another device of yours/.test(e.textContent)), { timeout: 60000, polling: 100 });
        assert.ok(!(await bobPage.$$eval('.msg.theirs .text', (l) => l.map((e) => e.textContent))).includes(forTerm), 'the browser read an item sealed for the terminal');
        await press(bobPage, '#back');
        await bobPage.waitForSelector('#mainscreen', { timeout: 60000 });
        // His browser published its own prekeys over the terminal's: alice's next message is sealed for it.
        await openWith(alice, 'bob');
        await alice.waitForSelector('#routenote[data-route="route_mailbox"]', { timeout: 30000 });
        await say(alice, forBrowser);
        await alice.waitForFunction(() => [...document.querySelectorAll('.msg.mine .state')].filter((e) => /waiting in the relay/.test(e.textContent)).length === 3, { timeout: 60000, polling: 100 });
        await press(alice, '#back');
        await alice.waitForSelector('#mainscreen', { timeout: 60000 });
        await openWith(bobPage, 'alice');
        await sees(bobPage, forBrowser);
        await press(bobPage, '#back');
        await bobPage.waitForSelector('#mainscreen', { timeout: 60000 });
        // The item stayed at the relay, and the terminal, which holds that prekey's private half, reads it.
        const term = bob(['--key', zip]);
        const m = await term.wait((e) => e.type === 'message', 'the item sealed for the terminal', 120000);
        assert.equal(m.text, forTerm);
        assert.equal(m.mailbox, true);
        term.send({ cmd: 'leave' });
        assert.equal(await term.exited, 0);
      });
    } finally {
      for (const term of terms) term.stop();
      await b.close();
      await b2?.close();
      await relay.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
}
