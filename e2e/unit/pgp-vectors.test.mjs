// Protocol v1 (dialogs) between the browser and Go: the key ZIPs Go exports import here, and the messages Go's
// relay/client/pgp Sender made open and verify with the browser's Receiver (the reverse runs in
// go test ./relay/client/pgp). Vectors: testdata/pgp, written by gen-pgp-vectors.mjs and the Go test's -update.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as pgp from '../../static/js/pgp.mjs';
import { PGP_DIR, PASS, readMessages } from './pgp-vectors.mjs';

async function keys() {
  const out = {};
  for (const name of ['js-rsa', 'js-curve', 'js-v6', 'go-rsa', 'go-curve', 'go-v6']) {
    out[name] = await pgp.importZip(new Uint8Array(readFileSync(new URL(`${name}.zip`, PGP_DIR))), PASS);
  }
  return out;
}

test('key ZIPs exported by Go import in the browser, and a wrong passphrase is refused', async () => {
  const k = await keys();
  assert.ok(k['go-rsa'].isDecrypted() && k['go-curve'].isDecrypted());
  assert.equal(pgp.keyInfo(k['go-rsa']).bits, 4096);
  // Go's RFC 9580 v6 key, and the browser's own read back.
  for (const name of ['go-v6', 'js-v6']) assert.equal(pgp.keyInfo(k[name]).version, 6, name);
  assert.equal(pgp.keyInfo(k['go-curve']).version, 4);
  await assert.rejects(pgp.importZip(new Uint8Array(readFileSync(new URL('go-curve.zip', PGP_DIR))), 'wrong'), /wrong passphrase/);
});

for (const file of ['go-messages.txt', 'js-messages.txt']) {
  test(`${file}: every message opens and verifies with the browser's Receiver`, async () => {
    const k = await keys();
    const receivers = new Map();
    let cached = 0;
    for (const m of readMessages(file)) {
      if (!receivers.has(m.to)) receivers.set(m.to, new pgp.Receiver(k[m.to]));
      const r = await receivers.get(m.to).decrypt(m.msg, k[m.from].toPublic());
      assert.ok(r.verified, `${m.from} → ${m.to}: signature not verified`);
      assert.deepEqual(Buffer.from(r.data), m.plain);
      cached += r.cached ? 1 : 0;
      const other = m.from === 'go-curve' ? k['js-curve'] : k['go-curve'];
      const wrong = await new pgp.Receiver(k[m.to]).decrypt(m.msg, other.toPublic());
      assert.equal(wrong.verified, false, 'verified against another key');
    }
    // The second message of each pair reused the session key: the Receiver's cache opened it.
    assert.equal(cached, readMessages(file).length / 2);
  });
}
