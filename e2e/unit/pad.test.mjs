import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pad, unpad, padTo, unpadFrom, BUCKETS, FRAME_BUCKETS, MAX_DATA, bucketFor } from '../../static/js/pad.mjs';

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

test('padTo with a lead leaves the lead to the caller and round-trips on other bucket sets', () => {
  const data = new Uint8Array(1000).fill(7);
  const b = padTo(data, FRAME_BUCKETS, 1);
  assert.equal(b.length, 1024, '1 lead byte + 4-byte length + 1000 bytes fits 1 KiB');
  assert.equal(b[0], 0);
  assert.deepEqual(unpadFrom(b, FRAME_BUCKETS, 1), data);
  const next = padTo(new Uint8Array(1020), FRAME_BUCKETS, 1);
  assert.equal(next.length, 2048, 'one byte over moves to the next bucket');
  assert.throws(() => unpadFrom(next, BUCKETS, 1), /2048 bytes is not a bucket size/);
  assert.equal(bucketFor(65536 - 5, FRAME_BUCKETS, 1), 65536);
  assert.throws(() => bucketFor(65536 - 4, FRAME_BUCKETS, 1), /over the 65531-byte limit/);
  const huge = b.slice();
  new DataView(huge.buffer).setUint32(1, 0xffffffff);
  assert.throws(() => unpadFrom(huge, FRAME_BUCKETS, 1), /length field 4294967295 overruns the 1024-byte block/);
});
