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

// The vendored ML-KEM (static/vendor/noble) is the pinned @noble packages' files with one change:
// bare imports "from '@noble/X/…'" become "from '../X/…'", since a browser has no package resolution.
const NOBLE = [
  'post-quantum/ml-kem.js', 'post-quantum/_crystals.js', 'post-quantum/utils.js',
  'hashes/sha3.js', 'hashes/utils.js', 'hashes/_u64.js',
  'curves/utils.js', 'curves/abstract/fft.js', 'curves/abstract/modular.js',
  'post-quantum/LICENSE', 'hashes/LICENSE', 'curves/LICENSE',
];

test('static/vendor/noble equals the pinned @noble packages, imports made relative', () => {
  const pq = JSON.parse(readFileSync(new URL('e2e/node_modules/@noble/post-quantum/package.json', root)));
  assert.equal(pq.version, pinned('@noble/post-quantum'), 'installed @noble/post-quantum is not the pinned version: run npm ci in e2e/');
  for (const dep of ['hashes', 'curves']) {
    assert.equal(installed(`@noble/${dep}`), pq.dependencies[`@noble/${dep}`], `@noble/${dep} is not the version @noble/post-quantum pins`);
  }
  for (const f of NOBLE) {
    const npm = readFileSync(new URL(`e2e/node_modules/@noble/${f}`, root), 'utf8').replaceAll("from '@noble/", "from '../");
    const ours = readFileSync(new URL(`static/vendor/noble/${f}`, root), 'utf8');
    assert.ok(ours === npm, `static/vendor/noble/${f} differs from the npm package`);
  }
});

test('the vendored ML-KEM imports nothing outside static/vendor/noble and uses no WebAssembly', () => {
  for (const f of NOBLE.filter((x) => x.endsWith('.js'))) {
    const src = readFileSync(new URL(`static/vendor/noble/${f}`, root), 'utf8');
    for (const m of src.matchAll(/^import .* from ['"]([^'"]+)['"]/gm)) {
      const target = new URL(m[1], new URL(`static/vendor/noble/${f}`, root));
      assert.ok(target.href.startsWith(new URL('static/vendor/noble/', root).href), `${f} imports ${m[1]}`);
      assert.ok(NOBLE.some((x) => target.href.endsWith(`static/vendor/noble/${x}`)), `${f} imports ${m[1]}, which is not vendored`);
    }
    assert.doesNotMatch(src, /WebAssembly/);
  }
});
