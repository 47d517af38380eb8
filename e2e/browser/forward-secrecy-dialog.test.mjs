// Forward secrecy in a dialog, shown: alice and bob (accounts, OpenPGP keys from the directory) chat over
// protocol v2 while the recording proxy keeps every frame; afterwards both exported key files with their
// passphrases and everything left in both browsers decrypt none of the recorded frames, while the per-message
// keys captured from the worker during the session decrypt every one. Also measures a dialog's v2 costs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { startRelay, launch, openPage, artifacts, press, fill, say, sees, frames, exportZip, receiptsSettled } from './harness.mjs';
import { readZip } from '../../static/js/zip.mjs';
import * as pgp from '../../static/js/pgp.mjs';
import { KIND_MESSAGE, KIND_COMMIT, KIND_KEYPACKAGE } from '../../static/js/e2e-core.mjs';
import { readHeader } from '../../static/js/e2e-epoch.mjs';
import { KIND_PGP, decodePayload } from '../../static/js/proto.mjs';
import { leftovers, candidates, tryOpen, keyFrom, unhex } from './fs-attack.mjs';

const KINDS = (process.env.CR_BROWSERS ?? 'chromium,firefox').split(',').filter(Boolean);
// CR_DIALOG_KEY=rsa measures with RSA-4096 account keys (slow to make without a JIT), CR_DIALOG_KEY=v6 with RFC 9580
// v6 keys; v4 Curve25519 otherwise.
const KEY = ['rsa', 'v6'].includes(process.env.CR_DIALOG_KEY) ? process.env.CR_DIALOG_KEY : 'curve25519';

async function account(page, user, password, keyPass, zipPass) {
  await press(page, '#toregister');
  await fill(page, '#regname', user);
  await fill(page, '#fullname', `${user[0].toUpperCase()}${user.slice(1)} Tester`);
  await fill(page, '#email', `${user}@example.org`);
  await fill(page, '#regpass', password);
  await press(page, '#registerdo');
  await page.waitForSelector('#loginscreen', { timeout: 60000 });
  await fill(page, '#loginname', user);
  await fill(page, '#loginpass', password);
  await press(page, '#logindo');
  await page.waitForSelector('#keysetup', { timeout: 60000 });
  await page.$eval('#acctkeytype', (s, k) => {
    if ([...s.options].some((o) => o.value === k)) s.value = k;
  }, KEY);
  await fill(page, '#newpass', keyPass);
  await press(page, '#generate');
  await page.waitForSelector('#keyready', { timeout: 600000 });
  const zip = await exportZip(page, zipPass);
  await press(page, '#continue');
  await page.waitForSelector('#mainscreen', { timeout: 60000 });
  return zip;
}

async function openDialog(page, user) {
  await page.evaluate(() => {
    globalThis.cleanrelayCaptureKeys = true;
  });
  await fill(page, '#search', user.slice(0, 2));
  await press(page, `#results button[data-user="${user}"]`);
  await page.waitForSelector('#room #text:not([disabled])', { timeout: 60000 });
}

const med = (xs) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];
const summary = (xs) => ({ median: +med(xs).toFixed(2), max: +Math.max(...xs).toFixed(2), n: xs.length });

for (const kind of KINDS) {
  test(`${kind}: a dialog's recorded v2 frames resist both key files and everything left, and open with the captured keys`, { timeout: 1800000 }, async (t) => {
    const relay = await startRelay();
    const b = await launch(kind);
    try {
      const alice = await openPage(b, relay.url);
      const bob = await openPage(b, relay.url);
      const aZip = readZip(await account(alice, 'alice', 'Alice-pass1!', 'Alice-key-pass1!', 'Alice-zip-pass1!'));
      const bZip = readZip(await account(bob, 'bob', 'Bob-pass1!', 'Bob-key-pass1!', 'Bob-zip-pass1!'));
      await openDialog(alice, 'bob');
      await openDialog(bob, 'alice');
      const texts = [];
      for (let i = 0; i < 5; i++) {
        const m1 = `alice says ${i} ${randomBytes(6).toString('hex')}`;
        const m2 = `bob says ${i} ${randomBytes(6).toString('hex')}`;
        texts.push(m1, m2);
        await say(alice, m1);
        await sees(bob, m1);
        await say(bob, m2);
        await sees(alice, m2);
      }
      await receiptsSettled(alice, bob);
      const perf = { browser: kind, key: KEY };
      const sa = await alice.evaluate(() => globalThis.cleanrelayStats);
      const sb = await bob.evaluate(() => globalThis.cleanrelayStats);
      perf.sendMs = summary([...sa.send, ...sb.send].map((x) => x.t1 - x.t0));
      perf.recvMs = summary([...sa.recv, ...sb.recv].map((x) => x.t1 - x.t0));
      perf.epochMs = [...sa.epoch, ...sb.epoch].map((x) => ({ committer: x.committer, ms: +(x.t1 - x.t0).toFixed(1) }));
      writeFileSync(join(artifacts, `perf-v2-dialog-${kind}-${KEY}.json`), JSON.stringify(perf, null, 2));
      t.diagnostic(`perf ${JSON.stringify(perf)}`);

      const keys = [...await alice.evaluate(() => globalThis.cleanrelayKeys ?? []), ...await bob.evaluate(() => globalThis.cleanrelayKeys ?? [])];
      await press(alice, '#burn');
      // A dialog that ends goes back to the main screen, on both sides.
      await Promise.all([alice.waitForSelector('#mainscreen', { timeout: 60000 }), bob.waitForSelector('#mainscreen', { timeout: 60000 })]);
      const left = [await leftovers(alice), await leftovers(bob)];
      writeFileSync(join(artifacts, `leftovers-dialog-${kind}.json`), JSON.stringify(left, null, 2));

      const all = frames(relay.proxy).filter((f) => f.dir === 'down');
      const recorded = all.filter((f) => f.kind === KIND_MESSAGE).map((f) => decodePayload(new Uint8Array(f.payload)).body.slice());
      assert.equal(all.filter((f) => f.kind === KIND_PGP).length, 0, 'a v1 frame went through the dialog room');
      assert.ok(all.some((f) => f.kind === KIND_COMMIT) && all.some((f) => f.kind === KIND_KEYPACKAGE), 'no v2 key agreement recorded');
      assert.ok(recorded.length >= texts.length, `only ${recorded.length} message frames recorded`);

      await t.test('the per-message keys captured during the session decrypt every recorded frame', async () => {
        const byId = new Map(keys.map((k) => [`${k.epoch}/${k.sender}/${k.n}`, k]));
        const shown = [];
        for (const body of recorded) {
          const h = readHeader(body);
          const k = byId.get(`${h.epoch}/${h.sender}/${h.n}`);
          assert.ok(k, `no captured key for message ${h.epoch}/${h.sender}/${h.n}`);
          const env = await tryOpen(body, unhex(k.key), unhex(k.epochId));
          assert.ok(env, `the captured key does not open message ${h.epoch}/${h.sender}/${h.n}`);
          if (env.header.k === 'msg') shown.push(env.header.text);
        }
        for (const m of texts) assert.ok(shown.includes(m), `"${m}" not among the decrypted frames`);
      });

      await t.test('both account keys with their passphrases and all browser storage decrypt none', async () => {
        const privs = [];
        for (const [z, pass] of [[aZip, 'Alice-zip-pass1!'], [bZip, 'Bob-zip-pass1!']]) {
          const armored = new TextDecoder().decode([...z].find(([n]) => n.endsWith('-private.asc'))[1]);
          privs.push({ armored, key: await pgp.unlockKey(armored, pass), pass });
        }
        const cands = candidates([JSON.stringify(left), ...privs.flatMap((p) => [p.armored, p.pass]), 'Alice-key-pass1!', 'Bob-key-pass1!',
          ...privs.map((p) => p.key.keyPacket.write()), ...privs.flatMap((p) => p.key.getSubkeys().map((s) => s.keyPacket.write()))]);
        t.diagnostic(`${cands.length} candidate secrets from ${JSON.stringify(left).length} bytes of storage and two unlocked key files`);
        const epochIds = [...new Set(keys.map((k) => k.epochId))].map(unhex);
        let tries = 0;
        for (const body of recorded.slice(0, 12)) {
          const h = readHeader(body);
          for (const p of privs) {
            await assert.rejects(async () => {
              const message = await pgp.openpgp.readMessage({ binaryMessage: body });
              await pgp.openpgp.decrypt({ message, decryptionKeys: p.key, format: 'binary' });
            }, 'an OpenPGP key opened a v2 frame');
          }
          for (const c of cands) {
            for (const id of epochIds) {
              for (const asChain of [false, true]) {
                tries++;
                assert.equal(await tryOpen(body, await keyFrom(c, id, h.sender, h.n, asChain), id), null, 'a leftover opened a frame');
              }
            }
            if (c.length >= 44) assert.equal(await tryOpen(body, c, epochIds[0]), null, 'a leftover opened a frame');
          }
        }
        t.diagnostic(`${tries} derivations tried, none opened a frame`);
      });
    } finally {
      await b.close();
      await relay.stop();
    }
  });
}
