// Module pad hides message lengths: plaintext is padded to a fixed bucket size before encryption.
//
// Layout of a padded block: 4-byte big-endian length n, then n bytes of data, then zeros up to the
// bucket size. The zeros sit inside the OpenPGP encryption, so they cost bandwidth, not secrecy.

// BUCKETS are the only plaintext sizes the relay can observe (plus OpenPGP overhead). The largest
// one, plus the overhead of eight RSA-4096 recipients and a signature, stays below the relay's
// default 64 KiB frame.
export const BUCKETS = Object.freeze([256, 1024, 4096, 16384, 40960]);

// MAX_DATA is the most data one padded block can carry.
export const MAX_DATA = BUCKETS[BUCKETS.length - 1] - 4;

// bucketFor returns the bucket size used for n bytes of data.
export function bucketFor(n) {
  for (const b of BUCKETS) {
    if (n + 4 <= b) return b;
  }
  throw new RangeError(`failed to pad: ${n} bytes is over the ${MAX_DATA}-byte limit`);
}

// pad returns data padded to its bucket.
export function pad(data) {
  if (!(data instanceof Uint8Array)) throw new TypeError('failed to pad: data must be a Uint8Array');
  const out = new Uint8Array(bucketFor(data.length));
  new DataView(out.buffer).setUint32(0, data.length);
  out.set(data, 4);
  return out;
}

// unpad returns the data inside a padded block. It refuses a block whose size is not a bucket,
// whose length field overruns it, or whose padding is not zero, so a tampered block is an error.
export function unpad(block) {
  if (!(block instanceof Uint8Array)) throw new TypeError('failed to unpad: block must be a Uint8Array');
  if (!BUCKETS.includes(block.length)) throw new Error(`failed to unpad: ${block.length} bytes is not a bucket size`);
  const n = new DataView(block.buffer, block.byteOffset, block.byteLength).getUint32(0);
  if (n + 4 > block.length) throw new Error('failed to unpad: length field overruns the block');
  for (let i = 4 + n; i < block.length; i++) {
    if (block[i] !== 0) throw new Error('failed to unpad: padding is not zero');
  }
  return block.subarray(4, 4 + n);
}
