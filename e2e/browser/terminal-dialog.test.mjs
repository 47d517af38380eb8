// End-to-end: a browser account and a terminal account (`cleanrelay chat --json --login`) in a dialog through a
// real relay, protocol v2 (the account keys sign key packages and commits; docs/e2e.md): the same safety code, messages and a file each way, burn from
// either side, and a key change on each side caught on the other and blocking until trusted. The browser makes
// its default account key (Curve25519 where WebCrypto has it), the terminal its own (RSA-4096) and exports it as
// the browser's ZIP, so the two kinds meet.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, readFileSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startRelay, launch, openPage, shot, press, fill, say, sees, assertCleanWire, frames } from './harness.mjs';
import { KIND_PGP, KIND_KEY } from '../../static/js/proto.mjs';
import { KIND_MESSAGE, KIND_COMMIT } from '../../static/js/e2e-core.mjs';
import { Terminal, safetyOf, savedFile } from './terminal.mjs';
import * as pgp from '../../static/js/pgp.mjs';

const KINDS = (process.env.CR_BROWSERS ?? 'firefox').split(',').filter(Boolean);
const BOB = { CLEANRELAY_PASSWORD: 'Bob-term-pass1!', CLEANRELAY_KEY_PASSPHRASE: 'Bob-zip-pass1!' };

async function register(url, username, password) {
  const r = await fetch(new URL('/api/register', url), { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ username, full_name: `${username} Tester`, password }) });
  assert.equal(r.status, 201, `register ${username}`);
}

async function newKey(page, passphrase) {
  await page.waitForSelector('#keysetup', { timeout: 60000 });
  await fill(page, '#newpass', passphrase);
  await press(page, '#generate');
  await page.waitForSelector('#keyready', { timeout: 180000 });
  const fp = await page.$eval('#keyready .fp', (e) => e.textContent);
  await press(page, '#continue');
  await page.waitForSelector('#mainscreen', { timeout: 60000 });
  return fp;
}

// openWith opens the dialog with user from the main screen's search; a key change stops at its warning.
async function openWith(page, user) {
  await fill(page, '#search', user.slice(0, 2));
  await press(page, `#results button[data-user="${user}"]`);
  await page.waitForSelector('#room, dialog#keychange[open]', { timeout: 60000 });
}

async function ready(page) {
  await page.waitForSelector('#status[data-ready="yes"]', { timeout: 120000 });
}

async function until(cond, what, timeout = 60000) {
  for (const end = Date.now() + timeout; !cond();) {
    if (Date.now() > end) throw new Error(`no ${what} in ${timeout} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const noErrors = (term) => assert.deepEqual(term.events.filter((e) => e.type === 'error' || (e.type === 'problem' && e.code !== 'unsaved')), []);

for (const kind of KINDS) {
  test(`browser and terminal accounts in a dialog (${kind})`, { timeout: 900000 }, async (t) => {
    const relay = await startRelay();
    const b = await launch(kind);
    const dir = mkdtempSync(join(tmpdir(), 'crtermdlg-'));
    const zip = join(dir, 'bob.zip');
    const pins = join(dir, 'pins.json');
    const terms = [];
    const secrets = [];
    const bob = (args) => {
      const term = new Terminal(['--login', 'bob', ...args, relay.url, '@alice'], dir, BOB);
      terms.push(term);
      return term;
    };
    try {
      const alice = await openPage(b, relay.url);
      let firstSafety;
      await t.test('chat both ways, a file each way, burn from the terminal', async () => {
        await register(relay.url, 'alice', 'Alice-pass1!');
        await register(relay.url, 'bob', BOB.CLEANRELAY_PASSWORD);
        await press(alice, '#tologin');
        await fill(alice, '#loginname', 'alice');
        await fill(alice, '#loginpass', 'Alice-pass1!');
        await press(alice, '#logindo');
        await newKey(alice, 'Alice-key-pass1!');
        // The terminal makes its key, publishes it and saves it as the browser's ZIP, which the browser reads.
        const term = bob(['--export', zip, '--pins', pins]);
        const key = await term.wait((e) => e.type === 'key', 'the key made', 120000);
        await term.wait((e) => e.type === 'exported', 'the ZIP');
        const imported = await pgp.importZip(new Uint8Array(readFileSync(zip)), BOB.CLEANRELAY_KEY_PASSPHRASE);
        assert.equal(imported.getFingerprint().toUpperCase(), key.text);
        assert.equal(pgp.keyInfo(imported).bits, 4096);

        await openWith(alice, 'bob');
        await ready(alice);
        firstSafety = (await term.wait((e) => e.type === 'safety', 'safety code')).safety;
        assert.equal(await safetyOf(alice), firstSafety, 'the browser and the terminal show the same safety code');
        const m1 = `hello bob ${randomBytes(4).toString('hex')}`;
        const m2 = `привет, alice ${randomBytes(4).toString('hex')}`;
        secrets.push(m1, m2);
        await say(alice, m1);
        const got = await term.wait((e) => e.type === 'message' && e.text === m1, 'the browser\'s message');
        assert.equal(got.unverified, undefined, 'the browser\'s signature verified');
        term.send({ cmd: 'send', text: m2 });
        await sees(alice, m2);
        assert.equal(await alice.$$eval('.unverified', (l) => l.length), 0, 'the browser did not verify the terminal\'s signature');

        const up = randomBytes(120 * 1024);
        const src = join(mkdtempSync(join(tmpdir(), 'crfile-')), 'to-terminal.bin');
        writeFileSync(src, up);
        await (await alice.$('#file')).uploadFile(src);
        const f = await term.wait((e) => e.type === 'file', 'the browser\'s file', 180000);
        assert.ok(readFileSync(f.path).equals(up), 'the terminal saved the browser\'s file byte for byte');
        const down = randomBytes(70 * 1024);
        const src2 = join(dir, 'to-browser.bin');
        writeFileSync(src2, down);
        term.send({ cmd: 'file', path: src2 });
        assert.ok((await savedFile(alice)).data.equals(down), 'the browser received the terminal\'s file byte for byte');
        await shot(alice, `${kind}-terminal-dialog`);
        assert.equal(await alice.$$eval('.unverified', (l) => l.length), 0);
        assert.deepEqual(await alice.$$eval('.problem', (l) => l.map((e) => e.textContent)), []);
        term.send({ cmd: 'burn' });
        await alice.waitForSelector('#mainscreen', { timeout: 60000 }); // a dialog that ends goes back to the main screen
        assert.equal(await alice.$('#room'), null);
        assert.equal((await term.wait((e) => e.type === 'ended', 'the end')).reason, 'burned');
        assert.equal(await term.exited, 0);
        noErrors(term);
      });

      await t.test('the browser\'s new key is caught by the terminal; burn from the browser', async () => {
        await alice.reload({ waitUntil: 'load' });
        await alice.waitForSelector('#unlockscreen', { timeout: 60000 });
        await press(alice, '#forgot'); // a confirm(), accepted by the harness
        const newFp = (await newKey(alice, 'Alice-new-pass2!')).replace(/ /g, '');
        const term = bob(['--key', zip, '--pins', pins]);
        const kc = await term.wait((e) => e.type === 'keychange', 'the key change');
        assert.equal(kc.safety, firstSafety);
        assert.notEqual(kc.offered, firstSafety);
        term.send({ cmd: 'send', text: 'must not go out' });
        await until(() => term.events.some((e) => e.type === 'error'), 'the refusal');
        assert.match(term.events.find((e) => e.type === 'error').message, /blocked/);
        term.events = term.events.filter((e) => e.type !== 'error'); // expected: wait() fails on errors
        await openWith(alice, 'bob'); // bob's key is the pinned one: straight in
        await term.wait((e) => e.type === 'presence' && e.event === 'join', 'alice in the dialog');
        assert.ok(!term.events.some((e) => e.type === 'sent' || e.type === 'safety'), 'sent or trusted while blocked');
        term.send({ cmd: 'trust' });
        const s = await term.wait((e) => e.type === 'safety', 'the new safety code');
        assert.equal(s.safety, kc.offered);
        await ready(alice);
        assert.equal(await safetyOf(alice), kc.offered);
        const m = `to alice's new key ${randomBytes(4).toString('hex')}`;
        secrets.push(m);
        term.send({ cmd: 'send', text: m });
        await sees(alice, m);
        assert.ok(!(await alice.$$eval('.msg .text', (l) => l.map((e) => e.textContent))).includes('must not go out'));
        await press(alice, '#burn');
        assert.equal((await term.wait((e) => e.type === 'ended', 'the end')).reason, 'burned');
        assert.equal(await term.exited, 0);
        assert.equal(JSON.parse(readFileSync(pins, 'utf8')).bob.alice, newFp, 'the pins file holds the trusted key');
      });

      await t.test('the terminal\'s new key is caught by the browser', async () => {
        await alice.waitForSelector('#back, #mainscreen', { timeout: 60000 });
        if (await alice.$('#back')) await press(alice, '#back');
        await alice.waitForSelector('#mainscreen', { timeout: 60000 });
        const term = bob(['--new-key', '--key-type', 'curve25519', '--pins', pins]);
        const key = await term.wait((e) => e.type === 'key', 'the new key');
        await openWith(alice, 'bob');
        await alice.waitForSelector('dialog#keychange[open]', { timeout: 60000 });
        assert.equal((await alice.$eval('#newfp', (e) => e.textContent)).replace(/ /g, ''), key.text);
        assert.equal(await alice.$('#room'), null, 'the dialog opened despite the changed key');
        await press(alice, '#kctrust');
        await ready(alice);
        const s = await term.wait((e) => e.type === 'safety', 'safety code');
        assert.equal(await safetyOf(alice), s.safety);
        const m1 = `after the terminal's new key ${randomBytes(4).toString('hex')}`;
        const m2 = `answer ${randomBytes(4).toString('hex')}`;
        secrets.push(m1, m2);
        await say(alice, m1);
        await term.wait((e) => e.type === 'message' && e.text === m1, 'the browser\'s message');
        term.send({ cmd: 'send', text: m2 });
        await sees(alice, m2);
        term.send({ cmd: 'leave' });
        assert.equal(await term.exited, 0);
        noErrors(term);
      });

      await t.test('the relay saw no plaintext, frames only of the bucket sizes, and only protocol v2 in the room', async () => {
        assertCleanWire(relay.proxy, [...secrets, 'must not go out']);
        const kinds = new Set(frames(relay.proxy).map((f) => f.kind));
        assert.ok(!kinds.has(KIND_PGP) && !kinds.has(KIND_KEY), `v1 frames in the dialog: kinds ${[...kinds]}`);
        assert.ok(kinds.has(KIND_MESSAGE) && kinds.has(KIND_COMMIT), `no v2 messages and commits: kinds ${[...kinds]}`);
      });
    } finally {
      for (const term of terms) term.stop();
      await b.close();
      await relay.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
}
