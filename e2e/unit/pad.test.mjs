import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pad, unpad, BUCKETS, MAX_DATA, bucketFor } from '../../static/js/pad.mjs';

test('pad picks the smallest bucket and round-trips', () => {
  for (const n of [0, 1, 252, 253, 1000, 1020, 1021, 4092, 16380, MAX_DATA]) {
    const data = new Uint8Array(n).map((_, i) => (i * 7 + 1) & 0xff);
    const p = pad(data);
    assert.ok(BUCKETS.includes(p.length), `size ${p.length} for ${n}`);
    assert.equal(p.length, BUCKETS.find((b) => n + 4 <= b));
    assert.deepEqual(unpad(p), data);
  }
  assert.equal(bucketFor(252), 256);
  assert.equal(bucketFor(253), 1024);
});

test('pad refuses data over the largest bucket', () => {
  assert.throws(() => pad(new Uint8Array(MAX_DATA + 1)), /over the/);
});

test('unpad refuses malformed blocks', () => {
  assert.throws(() => unpad(new Uint8Array(100)), /not a bucket size/);
  const p = pad(new Uint8Array([1, 2, 3]));
  const long = p.slice();
  new DataView(long.buffer).setUint32(0, 5000);
  assert.throws(() => unpad(long), /overruns/);
  const dirty = p.slice();
  dirty[200] = 9;
  assert.throws(() => unpad(dirty), /padding is not zero/);
});
