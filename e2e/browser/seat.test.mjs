// End-to-end, real relay and real browsers: the connection banner across a relay-side drop and a relay that is
// gone, the conversation's timer removing an image on both sides, and a reload that takes the same seat back
// (issue 14, items 4, 6 and 7). Chromium and Firefox ESR with Tor-Browser-"Safer"-like preferences.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PNG } from 'pngjs';
import { startRelay, launch, openPage, shot, press, say, sees } from './harness.mjs';

const KINDS = (process.env.CR_BROWSERS ?? 'chromium,firefox').split(',').filter(Boolean);
const SHOTS = process.env.CR_SHOTS === '1'; // also save the desktop and phone screenshots of docs/screenshots
const TIMER = 10; // seconds: the shortest the page offers

// png makes a w×h PNG of one colour (so the preview is visibly there in a screenshot).
function png(w, h, [r, g, b]) {
  const img = new PNG({ width: w, height: h });
  for (let i = 0; i < w * h; i++) img.data.set([r, g, b, 255], i * 4);
  return PNG.sync.write(img);
}

const ready = (page) => page.waitForSelector('#status[data-ready="yes"]', { timeout: 120000 });
const logText = (page) => page.$eval('#log', (l) => l.textContent);
const countTheirs = (page, text) => page.$$eval('.msg.theirs .text', (l, v) => l.filter((e) => e.textContent === v).length, text);

// phases records the banner's phases (and whether the composer's note showed) from now on, in the page.
async function watchBanner(page) {
  await page.evaluate(() => {
    const el = document.querySelector('#conn');
    globalThis.crPhases = [el.dataset.phase];
    let last = el.dataset.phase;
    new MutationObserver(() => {
      const note = !document.querySelector('#composernote').hidden;
      if (last !== el.dataset.phase) globalThis.crPhases.push(el.dataset.phase + (note ? '+note' : ''));
      last = el.dataset.phase;
    }).observe(el, { attributes: true, attributeFilter: ['data-phase'] });
  });
}

async function shots(page, name) {
  if (!SHOTS) return;
  for (const [tag, w, h] of [['desktop', 1400, 900], ['phone', 412, 915]]) {
    await page.setViewport({ width: w, height: h });
    await shot(page, `${name}-${tag}`);
  }
  await page.setViewport({ width: 1000, height: 900 });
}

for (const kind of KINDS) {
  test(`${kind}: connection banner, conversation timer, seat after reload`, { timeout: 600000 }, async (t) => {
    const relay = await startRelay();
    const b = await launch(kind);
    const dir = mkdtempSync(join(tmpdir(), 'crseat-'));
    try {
      const alice = await openPage(b, relay.url);
      const fast = await alice.$$eval('#keytype option', (l) => l.some((o) => o.value === 'curve25519'));
      if (fast) await alice.select('#keytype', 'curve25519');
      await press(alice, '#create');
      await alice.waitForSelector('#invitelink', { timeout: 120000 });
      const invite = await alice.$eval('#invitelink', (el) => el.value);
      const bob = await openPage(b, invite);
      if (fast) await bob.select('#keytype', 'curve25519');
      await press(bob, '#join');
      await Promise.all([ready(alice), ready(bob)]);
      await say(alice, 'hello before anything');
      await sees(bob, 'hello before anything');
      const bobConn = () => relay.proxy.conns.filter((c) => c.first === 'join' || c.first === 'resume').at(-1);

      await t.test('the banner says reconnecting, then connected, across a relay-side drop', async () => {
        for (const p of [alice, bob]) assert.equal(await p.$eval('#conn', (e) => e.dataset.phase), 'connected');
        await watchBanner(bob);
        relay.proxy.drop(bobConn());
        await bob.waitForFunction(() => globalThis.crPhases.at(-1) === 'connected' && globalThis.crPhases.length >= 3, { timeout: 60000, polling: 50 });
        const seen = await bob.evaluate(() => globalThis.crPhases);
        assert.deepEqual(seen.slice(0, 2), ['connected', 'reconnecting+note'], `phases ${seen}`);
        assert.equal(await bob.$eval('#composernote', (e) => e.hidden), true, 'the composer note stays after the drop');
        await say(bob, 'after the drop');
        await sees(alice, 'after the drop');
      });

      await t.test('the timer is announced on both sides and removes an image on both sides', async () => {
        await alice.$eval('#ttl', (el, v) => {
          el.value = v;
          el.dispatchEvent(new Event('change'));
        }, String(TIMER));
        for (const p of [alice, bob]) {
          await p.waitForFunction(() => document.querySelector('#log .system.timer')?.textContent.includes('10'), { timeout: 60000, polling: 100 });
        }
        assert.match(await alice.$eval('#log .system.timer', (e) => e.textContent), /^Messages disappear after 10 seconds \(set by you\)$/);
        assert.match(await bob.$eval('#log .system.timer', (e) => e.textContent), /^Messages disappear after 10 seconds \(set by member 1\)$/);
        assert.equal(await bob.$eval('#ttl', (e) => e.value), String(TIMER), 'the setting reached the other side');
        const path = join(dir, 'picture.png');
        writeFileSync(path, png(96, 64, [30, 120, 200]));
        await (await alice.$('#file')).uploadFile(path);
        await bob.waitForSelector('img.preview', { timeout: 60000 });
        await alice.waitForSelector('.msg.file[data-done="sent"] .countdown', { timeout: 60000 });
        const left = await bob.$eval('.msg.file .countdown', (e) => e.textContent);
        assert.match(left, /^0:(0\d|10)$/, `countdown ${left}`);
        await shots(bob, `${kind}-after-timer`);
        await shots(alice, `${kind}-after-timer-sender`);
        await bob.waitForFunction(() => !document.querySelector('img.preview') && !document.querySelector('.msg.file'), { timeout: 60000, polling: 200 });
        await alice.waitForFunction(() => !document.querySelector('.msg.file'), { timeout: 60000, polling: 200 });
        // Back to no timer, also announced.
        await bob.$eval('#ttl', (el) => {
          el.value = '0';
          el.dispatchEvent(new Event('change'));
        });
        await alice.waitForFunction(() => [...document.querySelectorAll('#log .system.timer')].some((e) => e.textContent === 'Messages no longer disappear (set by member 2)'), { timeout: 60000, polling: 100 });
      });

      await t.test('a reload takes the same seat back; nothing sent meanwhile is lost or shown twice', async () => {
        await press(bob, '#lang'); // kept for the session: the reloaded page speaks Russian
        const before = bobConn();
        relay.proxy.hold(before); // what alice writes now reaches the relay, not the old page
        const m1 = `while you reload ${randomBytes(4).toString('hex')}`;
        const m2 = `and again ${randomBytes(4).toString('hex')}`;
        await say(alice, m1);
        await say(alice, m2);
        await bob.reload({ waitUntil: 'load' });
        await bob.waitForSelector('#room', { timeout: 120000 });
        await ready(bob);
        await sees(bob, m1);
        await sees(bob, m2);
        // Usually one request for both; a message the relay took only after the new page was in asks on its own.
        await alice.waitForFunction(() => /Sent again [12] of the [12] message\(s\) that member 2 asked for/.test(document.querySelector('#log').textContent), { timeout: 60000, polling: 100 });
        const text = await logText(bob);
        assert.match(text, /Страница перезагружена и вернула своё место/);
        assert.match(text, /Вы потеряли связь/, 'a member is told of its own drop in the first person');
        assert.doesNotMatch(text, /Участник 2 потерял связь/);
        assert.equal(await bob.$$eval('.problem', (l) => l.map((e) => e.textContent).join(' | ')), '', 'no problem shown after the reload');
        assert.match(await logText(alice), /Member 2 lost connection/);
        assert.match(await logText(alice), /Member 2 is back/);
        assert.equal(await alice.$('dialog#keychange[open]'), null, 'the same identity came back: no key change');
        assert.equal(await bob.$$eval('.msg', (l) => l.some((e) => e.textContent.includes('hello before anything'))), false, 'what was shown before the reload is not replayed');
        await say(bob, 'back after the reload');
        await sees(alice, 'back after the reload');
        await say(alice, 'welcome back');
        await sees(bob, 'welcome back');
        await new Promise((r) => setTimeout(r, 1500)); // a duplicate would have come by now
        assert.equal(await countTheirs(bob, m1), 1);
        assert.equal(await countTheirs(bob, m2), 1);
        assert.equal(await countTheirs(alice, 'back after the reload'), 1);
      });

      await t.test('the banner says offline when the relay is gone', async () => {
        await relay.proxy.close();
        await bob.waitForSelector('#conn[data-phase="offline"]', { timeout: 60000 });
        assert.equal(await bob.$eval('#composernote', (e) => e.hidden), false);
        assert.match(await bob.$eval('#composernote', (e) => e.textContent), /Нет связи/);
        await shots(bob, `${kind}-after-offline-ru`);
        await alice.waitForSelector('#conn[data-phase="offline"]', { timeout: 60000 });
        await shots(alice, `${kind}-after-offline`);
      });
      for (const p of [alice, bob]) assert.deepEqual(p.errors.filter((e) => !/WebSocket|NS_ERROR|ERR_CONNECTION|establish a connection/.test(e)), [], `console errors in ${kind}`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
      await b.close();
      await relay.stop();
    }
  });
}
