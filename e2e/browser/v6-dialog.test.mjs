// End-to-end: an account with an RFC 9580 v6 key (Ed25519/X25519, 32-byte fingerprint) and one with the default
// v4 Curve25519 key register, publish, and open a dialog each way through a real relay; messages go both ways,
// both sides show the same safety code and each other's real fingerprint, the v6 key's export imports in a
// fresh profile, messages for an away user wait in the mailbox both ways, and a v4 key replaced by a v6 one is
// a key change the peer must accept. Prints the epoch change times with the v6 key (docs/e2e.md §14).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startRelay, launch, openPage, artifacts, shot, press, fill, say, sees, exportZip, assertCleanWire } from './harness.mjs';
import { readZip } from '../../static/js/zip.mjs';
import * as pgp from '../../static/js/pgp.mjs';

const KINDS = (process.env.CR_BROWSERS ?? 'chromium,firefox').split(',').filter(Boolean);

// account registers user on page (of browser kind), logs in and makes a key of type (the key setup's select; ''
// keeps the default).
async function account(kind, page, user, type) {
  await press(page, '#toregister');
  await fill(page, '#regname', user);
  await fill(page, '#fullname', `${user[0].toUpperCase()}${user.slice(1)} Tester`);
  await fill(page, '#regpass', `${user}-Pass1!`);
  await press(page, '#registerdo');
  await page.waitForSelector('#loginscreen', { timeout: 60000 });
  await fill(page, '#loginpass', `${user}-Pass1!`);
  await press(page, '#logindo');
  await page.waitForSelector('#keysetup', { timeout: 60000 });
  const offered = await page.$$eval('#acctkeytype option', (l) => l.map((o) => [o.value, o.textContent]));
  assert.equal(offered[0][0], 'curve25519', 'v4 Curve25519 is not the default');
  if (type) {
    const opt = offered.find(([v]) => v === type);
    assert.ok(opt, `no ${type} key offered: ${JSON.stringify(offered)}`);
    assert.match(opt[1], /OpenPGP v6 \(not for GnuPG\)/);
    assert.match(await page.$eval('#acctkeytype-hint', (e) => e.textContent), /GnuPG 2\.2 and 2\.4 cannot import it/);
    await page.select('#acctkeytype', type);
    await shot(page, `${kind}-v6-keysetup`);
  }
  await fill(page, '#newpass', `${user}-Key-pass1!`);
  await press(page, '#generate');
  await page.waitForSelector('#keyready', { timeout: 300000 });
  const fp = await page.$eval('#keyready .fp', (e) => e.textContent);
  const zip = await exportZip(page, `${user}-Zip-pass1!`);
  await press(page, '#continue');
  await page.waitForSelector('#mainscreen', { timeout: 60000 });
  return { fp, zip };
}

// keys reads the room's key dialog: own and peer fingerprint, the peer's algorithm line and safety code.
async function keys(page) {
  await press(page, '#e2e');
  await page.waitForSelector('dialog#keys[open]');
  const r = await page.$$eval('dialog#keys .key', (l) => l.map((b) => ({
    fp: b.querySelector('.fp').textContent,
    algorithm: b.querySelector('dd').textContent,
    safety: b.querySelector('.safety')?.textContent ?? null,
  })));
  await press(page, '#keysclose');
  return r;
}

async function opens(page, user) {
  await fill(page, '#search', user.slice(0, 2));
  await press(page, `#results button[data-user="${user}"]`);
  await page.waitForSelector('#room #text:not([disabled])', { timeout: 120000 });
}

async function answers(page, user) {
  await page.waitForSelector(`#dialogs button[data-user="${user}"]`, { timeout: 60000 });
  await press(page, `#dialogs button[data-user="${user}"]`);
  await page.waitForSelector('#room #text:not([disabled])', { timeout: 120000 });
}

async function chat(a, b, secrets) {
  const m1 = `from ${randomBytes(5).toString('hex')} одна`;
  const m2 = `back ${randomBytes(5).toString('hex')} две`;
  secrets.push(m1, m2);
  await say(a, m1);
  await sees(b, m1);
  await say(b, m2);
  await sees(a, m2);
}

async function sameKeys(t, v6page, v4page, v6fp, v4fp) {
  const [six, four] = [await keys(v6page), await keys(v4page)];
  assert.equal(six[0].fp, v6fp);
  assert.match(six[0].fp, /^([0-9A-F]{4} ){15}[0-9A-F]{4}$/, 'not a 32-byte fingerprint');
  assert.match(four[0].fp, /^([0-9A-F]{4} ){9}[0-9A-F]{4}$/, 'not a 20-byte fingerprint');
  assert.equal(six[1].fp, v4fp, 'the v6 side does not see the v4 key');
  assert.equal(four[1].fp, v6fp, 'the v4 side does not see the v6 key');
  assert.match(four[1].algorithm, /OpenPGP v6/);
  assert.match(six[1].safety, /^\d{5}( \d{5}){5}$/);
  assert.equal(six[1].safety, four[1].safety, 'the safety codes differ');
  assert.equal(six[1].safety, await pgp.safetyCode(v6fp, v4fp));
  t.diagnostic(`safety code ${six[1].safety}`);
}

for (const kind of KINDS) {
  test(`${kind}: a v6-key account and a v4-key account open a dialog each way`, { timeout: 1200000 }, async (t) => {
    const relay = await startRelay();
    const b = await launch(kind);
    let b2 = null;
    let fresh = null; // the v6 user's second browser, from its exported ZIP
    const dir = mkdtempSync(join(tmpdir(), 'crv6-'));
    const secrets = [];
    try {
      const six = await openPage(b, relay.url);
      const four = await openPage(b, relay.url);
      const s = await account(kind, six, 'sixer', 'v6');
      const f = await account(kind, four, 'fourer', '');
      const dirKey = async (name) => JSON.parse(await six.evaluate(async (n) => (await fetch(`/api/users/${n}/key`)).text(), name)).key;
      const [k6, k4] = [await dirKey('sixer'), await dirKey('fourer')];
      assert.equal(k6.version, 6);
      assert.equal(k6.fingerprint, s.fp.replace(/ /g, ''));
      assert.equal(k4.version, 4);

      await t.test('the v6 user opens the dialog, the v4 user answers', async () => {
        await opens(six, 'fourer');
        await answers(four, 'sixer');
        await chat(six, four, secrets);
        await sameKeys(t, six, four, s.fp, f.fp);
        // The Verify screen of the v4 side shows the whole 32-byte fingerprint and the same code.
        await press(four, '#verifybtn');
        await four.waitForSelector('dialog#verify[open]');
        assert.equal(await four.$eval('#verifypeerfp', (e) => e.textContent), s.fp);
        assert.equal(await four.$eval('#safetycode', (e) => e.dataset.code), await pgp.safetyCode(s.fp, f.fp));
        await shot(four, `${kind}-v6-verify`);
        await press(four, '#verifyclose');
        await press(six, '#burn');
        await Promise.all([six.waitForSelector('#mainscreen', { timeout: 60000 }), four.waitForSelector('#mainscreen', { timeout: 60000 })]);
      });

      await t.test('the v4 user opens a new dialog, the v6 user answers', async () => {
        await opens(four, 'sixer');
        await answers(six, 'fourer');
        await chat(four, six, secrets);
        await sameKeys(t, six, four, s.fp, f.fp);
      });

      await t.test('epoch change times with a v6 key', async () => {
        const perf = { browser: kind };
        for (const [name, p] of [['v6', six], ['v4', four]]) {
          const st = await p.evaluate(() => globalThis.cleanrelayStats);
          perf[`${name}EpochMs`] = st.epoch.map((x) => ({ committer: x.committer, ms: +(x.t1 - x.t0).toFixed(1) }));
        }
        assert.ok(perf.v6EpochMs.length >= 2 && perf.v4EpochMs.length >= 2, 'fewer epochs than dialogs');
        writeFileSync(join(artifacts, `perf-v6-dialog-${kind}.json`), JSON.stringify(perf, null, 2));
        t.diagnostic(`perf ${JSON.stringify(perf)}`);
      });

      await t.test('messages left for an away user wait in the mailbox, sealed to prekeys a v6 and a v4 key signed', async () => {
        // The v6 user leaves: the v4 user's message goes to one of its prekeys (signed by the v6 key). (Its
        // second browser, below, comes after this: prekeys live in the browser that made them.)
        await press(six, '#back');
        await six.waitForSelector('#mainscreen');
        await four.waitForSelector('#routenote[data-route="route_mailbox"]', { timeout: 60000 });
        const m1 = `left for the v6 user ${randomBytes(5).toString('hex')}`;
        secrets.push(m1);
        await say(four, m1);
        await six.waitForSelector('#dialogs button[data-user="fourer"] .unread', { timeout: 60000 });
        await press(six, '#dialogs button[data-user="fourer"]');
        await sees(six, m1);
        // And the reverse: the v4 user leaves, the v6 side seals to a prekey the v4 key signed.
        await press(four, '#back');
        await four.waitForSelector('#mainscreen');
        await six.waitForSelector('#routenote[data-route="route_mailbox"]', { timeout: 60000 });
        const m2 = `left for the v4 user ${randomBytes(5).toString('hex')}`;
        secrets.push(m2);
        await say(six, m2);
        await four.waitForSelector('#dialogs button[data-user="sixer"] .unread', { timeout: 60000 });
        await press(four, '#dialogs button[data-user="sixer"]');
        await sees(four, m2);
      });

      await t.test('the v6 key\'s export imports in a fresh profile, which reads a new message', async () => {
        const names = [...readZip(s.zip).keys()];
        assert.ok(names.some((n) => n.endsWith('-private.asc')), `zip holds ${names}`);
        await press(six, '#back');
        await six.waitForSelector('#mainscreen');
        await press(six, '#logout');
        await six.waitForSelector('#loginscreen', { timeout: 60000 });
        b2 = await launch(kind);
        fresh = await openPage(b2, relay.url);
        await press(fresh, '#tologin');
        await fill(fresh, '#loginname', 'sixer');
        await fill(fresh, '#loginpass', 'sixer-Pass1!');
        await press(fresh, '#logindo');
        await fresh.waitForSelector('#keysetup', { timeout: 60000 });
        const zipPath = join(dir, 'sixer-key.zip');
        writeFileSync(zipPath, s.zip);
        await (await fresh.$('#importfile')).uploadFile(zipPath);
        await fill(fresh, '#importpass', 'sixer-Zip-pass1!');
        await press(fresh, '#importdo');
        await fresh.waitForSelector('#mainscreen', { timeout: 60000 });
        await opens(fresh, 'fourer');
        await fresh.waitForSelector('#status[data-ready="yes"]', { timeout: 120000 });
        await four.waitForSelector('#status[data-ready="yes"]', { timeout: 120000 });
        const m = `to the imported v6 key ${randomBytes(5).toString('hex')}`;
        secrets.push(m);
        await say(four, m);
        await sees(fresh, m);
        const [own] = await keys(fresh);
        assert.equal(own.fp, s.fp, 'the import changed the key');
      });

      await t.test('the v4 user replaces its key with a v6 one: the peer is warned, and talks to it once trusted', async () => {
        await press(fresh, '#back');
        await fresh.waitForSelector('#mainscreen');
        await four.reload({ waitUntil: 'load' });
        await four.waitForSelector('#unlockscreen', { timeout: 60000 });
        await press(four, '#forgot'); // the warning is a confirm(), accepted by the harness
        await four.waitForSelector('#keysetup', { timeout: 60000 });
        await four.select('#acctkeytype', 'v6');
        await fill(four, '#newpass', 'fourer-Key-pass2!');
        await press(four, '#generate');
        await four.waitForSelector('#keyready', { timeout: 300000 });
        const newFp = await four.$eval('#keyready .fp', (e) => e.textContent);
        assert.match(newFp, /^([0-9A-F]{4} ){15}[0-9A-F]{4}$/);
        await press(four, '#continue');
        await fill(fresh, '#search', 'fo');
        await press(fresh, '#results button[data-user="fourer"]');
        await fresh.waitForSelector('dialog#keychange[open]', { timeout: 60000 });
        assert.equal(await fresh.$eval('#newfp', (e) => e.textContent), newFp);
        await press(fresh, '#kctrust');
        await fresh.waitForSelector('#room', { timeout: 60000 });
        await press(four, '#dialogs button[data-user="sixer"]');
        await Promise.all([fresh.waitForSelector('#status[data-ready="yes"]', { timeout: 120000 }), four.waitForSelector('#status[data-ready="yes"]', { timeout: 120000 })]);
        const m = `v6 to v6 ${randomBytes(5).toString('hex')}`;
        secrets.push(m);
        await say(fresh, m);
        await sees(four, m);
        const [mine, peer] = await keys(fresh);
        assert.equal(peer.fp, newFp);
        assert.equal(peer.safety, await pgp.safetyCode(mine.fp, newFp));
      });

      await t.test('the relay saw no plaintext', async () => {
        assertCleanWire(relay.proxy, [...secrets, 'Sixer Tester', 'Fourer Tester']);
      });
    } finally {
      if (b2) await b2.close();
      await b.close();
      await relay.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
}
