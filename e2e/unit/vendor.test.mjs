// The vendored OpenPGP.js must be byte-identical to the pinned npm package's browser build.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';

const root = new URL('../../', import.meta.url);
const sha = (p) => createHash('sha256').update(readFileSync(new URL(p, root))).digest('hex');

test('static/vendor/openpgp.min.mjs equals node_modules/openpgp/dist/openpgp.min.mjs', () => {
  const pinned = JSON.parse(readFileSync(new URL('e2e/package.json', root))).dependencies.openpgp;
  const installed = JSON.parse(readFileSync(new URL('e2e/node_modules/openpgp/package.json', root))).version;
  assert.equal(installed, pinned, 'installed openpgp is not the pinned version: run npm ci in e2e/');
  assert.match(pinned, /^6\.\d+\.\d+$/);
  assert.equal(sha('static/vendor/openpgp.min.mjs'), sha('e2e/node_modules/openpgp/dist/openpgp.min.mjs'));
});
