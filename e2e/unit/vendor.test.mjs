// The vendored libraries must be byte-identical to the pinned npm packages' builds.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';

const root = new URL('../../', import.meta.url);
const sha = (p) => createHash('sha256').update(readFileSync(new URL(p, root))).digest('hex');
const pinned = (name) => JSON.parse(readFileSync(new URL('e2e/package.json', root))).dependencies[name];
const installed = (name) => JSON.parse(readFileSync(new URL(`e2e/node_modules/${name}/package.json`, root))).version;

const VENDORED = [
  { name: 'openpgp', version: /^6\.\d+\.\d+$/, ours: 'static/vendor/openpgp.min.mjs', theirs: 'dist/openpgp.min.mjs' },
  { name: 'qrcode-generator', version: /^2\.\d+\.\d+$/, ours: 'static/vendor/qrcode.mjs', theirs: 'dist/qrcode.mjs' },
];

for (const v of VENDORED) {
  test(`${v.ours} equals node_modules/${v.name}/${v.theirs}`, () => {
    assert.equal(installed(v.name), pinned(v.name), `installed ${v.name} is not the pinned version: run npm ci in e2e/`);
    assert.match(pinned(v.name), v.version);
    assert.equal(sha(v.ours), sha(`e2e/node_modules/${v.name}/${v.theirs}`));
  });
}
