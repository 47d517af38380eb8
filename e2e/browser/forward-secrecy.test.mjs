// Forward secrecy, shown: two (then three) browsers chat in an anonymous room over protocol v2 while the
// recording proxy keeps every frame; afterwards everything left (browser storage, the exported long-term
// keys with their passphrases) decrypts none of them, while the per-message keys captured from the worker
// during the session decrypt every one. Also measures v2's costs (docs/e2e.md). Chromium and Firefox ESR
// with the Safer-like prefs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { startRelay, launch, openPage, artifacts, press, say, sees, frames, exportKey, backlog, receiptsSettled } from './harness.mjs';
import { readZip } from '../../static/js/zip.mjs';
import * as pgp from '../../static/js/pgp.mjs';
import { KIND_MESSAGE, KIND_COMMIT } from '../../static/js/e2e-core.mjs';
import { readHeader } from '../../static/js/e2e-epoch.mjs';
import { decodePayload } from '../../static/js/proto.mjs';
import { leftovers, candidates, tryOpen, keyFrom, unhex } from './fs-attack.mjs';

const KINDS = (process.env.CR_BROWSERS ?? 'chromium,firefox').split(',').filter(Boolean);

async function enter(page, { create = false, type = 'curve25519', max = '3' } = {}) {
  await page.evaluate(() => {
    globalThis.cleanrelayCaptureKeys = true;
  });
  if (await page.$(`#keytype option[value="${type}"]`)) await page.select('#keytype', type);
  if (create) {
    await page.select('#maxmembers', max);
    await press(page, '#create');
    await page.waitForSelector('#invitelink', { timeout: 120000 });
    return page.$eval('#invitelink', (el) => el.value);
  }
  await press(page, '#join');
  await page.waitForSelector('#room', { timeout: 120000 });
  return null;
}

const ready = (page) => page.waitForSelector('#status[data-ready="yes"]', { timeout: 60000 });

const med = (xs) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];
const p95 = (xs) => [...xs].sort((x, y) => x - y)[Math.min(xs.length - 1, Math.floor(xs.length * 0.95))];
const summary = (xs) => ({ median: +med(xs).toFixed(2), p95: +p95(xs).toFixed(2), max: +Math.max(...xs).toFixed(2), n: xs.length });

for (const kind of KINDS) {
  test(`${kind}: recorded v2 frames resist everything left after the session, and open with the captured keys`, { timeout: 900000 }, async (t) => {
    // A short reconnect grace, so that a closed tab counts as gone (and starts an epoch) within seconds.
    const relay = await startRelay({ args: ['--grace', '5s'] });
    const b = await launch(kind);
    const perf = { browser: kind };
    try {
      const alice = await openPage(b, relay.url);
      if (kind === 'firefox') assert.equal(await alice.evaluate(() => typeof WebAssembly), 'undefined', 'the Safer-like prefs did not take');
      const invite = await enter(alice, { create: true });
      const bob = await openPage(b, invite);
      await enter(bob);
      await Promise.all([ready(alice), ready(bob)]);
      const texts = [];
      for (let i = 0; i < 4; i++) {
        const m1 = `alice says ${i} ${randomBytes(6).toString('hex')}`;
        const m2 = `bob says ${i} ${randomBytes(6).toString('hex')}`;
        texts.push(m1, m2);
        await say(alice, m1);
        await sees(bob, m1);
        await say(bob, m2);
        await sees(alice, m2);
      }
      // A third member: a new epoch for everyone.
      const carol = await openPage(b, invite);
      await enter(carol);
      await ready(carol);
      await alice.waitForFunction(() => globalThis.cleanrelayStats.epoch.at(-1)?.members === 3, { timeout: 60000, polling: 100 });
      await bob.waitForFunction(() => globalThis.cleanrelayStats.epoch.at(-1)?.members === 3, { timeout: 60000, polling: 100 });
      const m3 = `carol is here ${randomBytes(6).toString('hex')}`;
      texts.push(m3);
      await say(carol, m3);
      await sees(alice, m3);
      await sees(bob, m3);
      await carol.close(); // gone after the grace: another epoch
      await alice.waitForFunction(() => globalThis.cleanrelayStats.epoch.at(-1)?.members === 2 && globalThis.cleanrelayStats.epoch.length >= 3, { timeout: 60000, polling: 200 });
      await ready(alice);

      await t.test('timing: send, receive, 100-message backlog, epoch changes', async () => {
        const { sent: s, received: r } = await backlog(relay.proxy, relay.proxy.conns.filter((c) => c.first === 'join').at(0), alice, bob);
        const ea = await alice.evaluate(() => globalThis.cleanrelayStats.epoch);
        const eb = await bob.evaluate(() => globalThis.cleanrelayStats.epoch);
        perf.sendMs = summary(s.map((x) => x.t1 - x.t0));
        perf.sendWorkerMs = summary(s.map((x) => x.worker));
        perf.recvMs = summary(r.map((x) => x.t1 - x.t0));
        perf.recvWorkerMs = summary(r.map((x) => x.worker));
        perf.backlog100Ms = +(Math.max(...r.map((x) => x.t1)) - Math.min(...r.map((x) => x.t0))).toFixed(1);
        perf.epochMs = {
          committer: ea.filter((x) => x.committer).map((x) => +(x.t1 - x.t0).toFixed(1)),
          member: eb.map((x) => +(x.t1 - x.t0).toFixed(1)),
        };
        writeFileSync(join(artifacts, `perf-v2-${kind}.json`), JSON.stringify(perf, null, 2));
        t.diagnostic(`perf ${JSON.stringify(perf)}`);
        assert.equal(r.length, 100);
      });

      await receiptsSettled(alice, bob); // the receipts' keys are captured too
      const keys = [...await alice.evaluate(() => globalThis.cleanrelayKeys), ...await bob.evaluate(() => globalThis.cleanrelayKeys)];
      const aZip = readZip(await exportKey(alice, 'Alice-export1!'));
      const bZip = readZip(await exportKey(bob, 'Bob-export1!'));
      await press(alice, '#burn');
      await Promise.all([alice.waitForSelector('#ended'), bob.waitForSelector('#ended')]);
      const left = [await leftovers(alice), await leftovers(bob)];
      writeFileSync(join(artifacts, `leftovers-${kind}.json`), JSON.stringify(left, null, 2));

      const recorded = frames(relay.proxy).filter((f) => f.dir === 'down' && f.kind === KIND_MESSAGE).map((f) => decodePayload(new Uint8Array(f.payload)).body.slice());
      const commits = frames(relay.proxy).filter((f) => f.dir === 'down' && f.kind === KIND_COMMIT).length;
      assert.ok(recorded.length >= 100 + texts.length, `only ${recorded.length} message frames recorded`);
      assert.ok(commits >= 3, `only ${commits} commits recorded`);

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

      await t.test('the long-term keys with their passphrases and all browser storage decrypt none', async () => {
        const privs = [];
        for (const [z, pass] of [[aZip, 'Alice-export1!'], [bZip, 'Bob-export1!']]) {
          const armored = new TextDecoder().decode([...z].find(([n]) => n.endsWith('-private.asc'))[1]);
          privs.push({ armored, key: await pgp.unlockKey(armored, pass), pass });
        }
        const cands = candidates([JSON.stringify(left), ...privs.flatMap((p) => [p.armored, p.pass]),
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
