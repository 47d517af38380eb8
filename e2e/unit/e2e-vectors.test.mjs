// The protocol v2 test vectors (testdata/e2e) pass in JavaScript, those made by Go and those made by JS.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { DIR, readVector, runVector, parseVector } from './e2e-vectors.mjs';

const files = readdirSync(DIR).filter((f) => f.endsWith('.txt')).sort();

test('vectors made by both implementations are present', () => {
  const by = {};
  for (const f of files) by[readVector(f).one.producer] = (by[readVector(f).one.producer] ?? 0) + 1;
  assert.ok(by.go > 0 && by.js > 0, `vectors by producer: ${JSON.stringify(by)}`);
});

test('an unknown header fails a vector', () => {
  assert.throws(() => parseVector('x', 'kind: session\nflavour: mint\n'), /unknown header "flavour"/);
});

for (const f of files) {
  test(`vector ${f}`, async () => {
    await runVector(readVector(f));
  });
}
