// Writes testdata/pgp/js-*: protocol v1 (dialogs) vectors made by the browser's OpenPGP layer (pgp.mjs): three
// exported key ZIPs (RSA-4096, Curve25519, an RFC 9580 v6 key) and messages from them to the Go keys (go-*.zip, made first by
// go test ./relay/client/pgp -run TestVectors -update). Usage: node gen-pgp-vectors.mjs
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import * as pgp from '../static/js/pgp.mjs';
import { PGP_DIR, PASS, plainOf } from './unit/pgp-vectors.mjs';

const hex = (b) => Buffer.from(b).toString('hex');
const keys = {};
for (const [name, type] of [['js-rsa', 'rsa'], ['js-curve', 'curve25519'], ['js-v6', 'v6']]) {
  const path = new URL(`${name}.zip`, PGP_DIR);
  if (!existsSync(path)) writeFileSync(path, await pgp.exportZip(await pgp.generateKeyPair({ type, name: `vector-${name}` }), PASS));
  keys[name] = await pgp.importZip(new Uint8Array(readFileSync(path)), PASS);
}
for (const name of ['go-rsa', 'go-curve']) keys[name] = await pgp.importZip(new Uint8Array(readFileSync(new URL(`${name}.zip`, PGP_DIR))), PASS);

const lines = ['comment: made by node e2e/gen-pgp-vectors.mjs (pgp.mjs Sender); opened by go test ./relay/client/pgp'];
for (const from of ['js-rsa', 'js-curve']) {
  for (const to of ['go-rsa', 'go-curve']) {
    const s = new pgp.Sender(keys[from]);
    s.setRecipients([keys[to].toPublic()]);
    for (const text of [`{"k":"msg","id":"js","text":"привет from ${from}"}`, '{"k":"msg","id":"js2","text":"second, same session key"}']) {
      const plain = plainOf(text);
      lines.push(`message: ${from} ${to} ${hex(plain)} ${hex(await s.encrypt(plain))}`);
    }
  }
}
writeFileSync(new URL('js-messages.txt', PGP_DIR), `${lines.join('\n')}\n`);
