// End-to-end: a real browser and the terminal client (`cleanrelay chat --json`) chat both ways through a real
// relay, in a room the browser created and in one the terminal created: messages, the same safety code, a file
// each way, the timer both ways, burn from either side. Chromium and Firefox ESR with Tor-Browser-"Safer"-like preferences.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, readFileSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startRelay, launch, openPage, shot, press, say, sees } from './harness.mjs';
import { Terminal, safetyOf, savedFile } from './terminal.mjs';

const KINDS = (process.env.CR_BROWSERS ?? 'chromium,firefox').split(',').filter(Boolean);

for (const kind of KINDS) {
  test(`browser and terminal chat (${kind})`, { timeout: 600000 }, async (t) => {
    const relay = await startRelay();
    const b = await launch(kind);
    const dir = mkdtempSync(join(tmpdir(), 'crterm-'));
    const terms = [];
    try {
      await t.test('a room the browser created', async () => {
        const alice = await openPage(b, relay.url);
        await press(alice, '#create');
        await alice.waitForSelector('#invitelink', { timeout: 120000 });
        const invite = await alice.$eval('#invitelink', (el) => el.value);
        const term = new Terminal([invite], dir);
        terms.push(term);
        await alice.waitForSelector('#status[data-ready="yes"]', { timeout: 60000 });
        const code = (await term.wait((e) => e.type === 'safety', 'safety code')).safety;
        assert.match(code, /^\d{5}( \d{5}){5}$/);
        assert.equal(await safetyOf(alice), code, 'the browser and the terminal show the same safety code');

        const m1 = `hello terminal ${randomBytes(4).toString('hex')}`;
        await say(alice, m1);
        await term.wait((e) => e.type === 'message' && e.text === m1 && e.from === 1, 'the browser\'s message');
        const m2 = `привет, браузер ${randomBytes(4).toString('hex')}`;
        term.send({ cmd: 'send', text: m2 });
        await sees(alice, m2);

        // A file from the browser to the terminal (past the 5-chunk window), and one back.
        const up = randomBytes(150 * 1024);
        const src = join(mkdtempSync(join(tmpdir(), 'crfile-')), 'from-browser.bin');
        writeFileSync(src, up);
        await (await alice.$('#file')).uploadFile(src);
        const got = await term.wait((e) => e.type === 'file', 'the browser\'s file', 120000);
        assert.equal(got.name, 'from-browser.bin');
        assert.ok(readFileSync(got.path).equals(up), 'the terminal saved the browser\'s file byte for byte');
        const down = randomBytes(70 * 1024);
        const src2 = join(dir, 'from-terminal.bin');
        writeFileSync(src2, down);
        term.send({ cmd: 'file', path: src2 });
        const saved = await savedFile(alice);
        assert.equal(saved.name, 'from-terminal.bin');
        assert.ok(saved.data.equals(down), 'the browser received the terminal\'s file byte for byte');
        await term.wait((e) => e.type === 'filesent', 'the file acknowledged');
        await shot(alice, `${kind}-terminal-chat`);

        term.send({ cmd: 'burn' });
        await alice.waitForSelector('#ended', { timeout: 60000 });
        assert.equal((await term.wait((e) => e.type === 'ended', 'the end')).reason, 'burned');
        assert.equal(await term.exited, 0);
        assert.deepEqual(await alice.$$eval('.problem', (l) => l.map((e) => e.textContent)), []);
        assert.deepEqual(term.events.filter((e) => e.type === 'problem'), []);
      });

      await t.test('a room the terminal created', async () => {
        const term = new Terminal(['--create', relay.url], dir);
        terms.push(term);
        const link = (await term.wait((e) => e.type === 'invite', 'invite link')).link;
        assert.match(link, /^http:\/\/127\.0\.0\.1:\d+\/#r=[\w-]{22}&c=[\w-]{43}&k=[\w-]{43}$/);
        const bob = await openPage(b, link);
        await press(bob, '#join');
        await bob.waitForSelector('#status[data-ready="yes"]', { timeout: 120000 });
        const code = (await term.wait((e) => e.type === 'safety', 'safety code')).safety;
        assert.equal(await safetyOf(bob), code);
        const m1 = `from the terminal ${randomBytes(4).toString('hex')}`;
        term.send({ cmd: 'send', text: m1 });
        await sees(bob, m1);
        const m2 = `from the browser ${randomBytes(4).toString('hex')}`;
        await say(bob, m2);
        await term.wait((e) => e.type === 'message' && e.text === m2 && e.from === 2, 'the browser\'s message');
        // The timer, both ways: the browser's ttl reaches the terminal, the terminal's leaves the browser's screen.
        const m3 = `timed from the browser ${randomBytes(4).toString('hex')}`;
        await bob.select('#ttl', '10');
        await say(bob, m3);
        await bob.select('#ttl', '0');
        assert.equal((await term.wait((e) => e.type === 'message' && e.text === m3, 'the timed message')).ttl, 10);
        const m4 = `timed from the terminal ${randomBytes(4).toString('hex')}`;
        term.send({ cmd: 'send', text: m4, ttl: 3 });
        await sees(bob, m4);
        await bob.waitForFunction((v) => ![...document.querySelectorAll('.msg .text')].some((e) => e.textContent === v), { timeout: 20000, polling: 100 }, m4);
        const sent = await term.wait((e) => e.type === 'sent' && e.text === m4, 'the timed message sent');
        await term.wait((e) => e.type === 'expired' && e.id === sent.id, 'the timed message expired', 30000);
        await press(bob, '#burn');
        await bob.waitForSelector('#ended', { timeout: 60000 });
        assert.equal((await term.wait((e) => e.type === 'ended', 'the end')).reason, 'burned');
        assert.equal(await term.exited, 0);
      });
    } finally {
      for (const term of terms) term.stop();
      await b.close();
      await relay.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
}
