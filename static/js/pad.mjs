// Module pad hides message lengths: data is padded to a fixed bucket size, twice over.
//
// Plaintext blocks (inside the OpenPGP encryption): 4-byte big-endian length n, then n bytes of
// data, then zeros up to one of BUCKETS. Frame payloads (what the relay sees): the same layout
// after a lead of caller bytes, up to one of FRAME_BUCKETS (proto.mjs writes the lead). The
// plaintext buckets alone are not enough: OpenPGP adds an overhead that varies with the
// recipients and, now and then, by a byte or two at random (RSA MPIs with leading zero bytes).

// BUCKETS are the plaintext block sizes. The largest one, plus the overhead of eight RSA-4096
// recipients and a signature, stays inside the largest frame bucket below 64 KiB.
export const BUCKETS = Object.freeze([256, 1024, 4096, 16384, 40960]);

// FRAME_BUCKETS are the only frame payload sizes the relay ever sees from this client. They are
// chosen so that each plaintext bucket with two RSA-4096 members lands in its own frame size
// (2 KiB, 4 KiB, 8 KiB, 24 KiB, 48 KiB); 1 KiB is a Curve25519 key announcement; 64 KiB is the
// relay's default frame limit (docs/client.md lists which frame takes which size).
export const FRAME_BUCKETS = Object.freeze([1024, 2048, 4096, 8192, 24576, 49152, 65536]);

// MAX_DATA is the most data one padded plaintext block can carry.
export const MAX_DATA = BUCKETS[BUCKETS.length - 1] - 4;

// bucketFor returns the smallest of buckets that holds n bytes of data after lead bytes and the
// length field.
export function bucketFor(n, buckets = BUCKETS, lead = 0) {
  for (const b of buckets) {
    if (lead + 4 + n <= b) return b;
  }
  throw new RangeError(`failed to pad: ${n} bytes is over the ${buckets[buckets.length - 1] - lead - 4}-byte limit`);
}

// padTo returns data padded to its bucket, with lead zero bytes before the length field for the
// caller to fill.
export function padTo(data, buckets, lead = 0) {
  if (!(data instanceof Uint8Array)) throw new TypeError('failed to pad: data must be a Uint8Array');
  const out = new Uint8Array(bucketFor(data.length, buckets, lead));
  new DataView(out.buffer).setUint32(lead, data.length);
  out.set(data, lead + 4);
  return out;
}

// unpadFrom returns the data inside a block made by padTo (a view, not a copy). It refuses a
// block whose size is not a bucket, whose length field overruns it, or whose padding is not zero,
// so a tampered block is an error and never a shorter or longer message.
export function unpadFrom(block, buckets, lead = 0) {
  if (!(block instanceof Uint8Array)) throw new TypeError('failed to unpad: block must be a Uint8Array');
  if (!buckets.includes(block.length)) throw new Error(`failed to unpad: ${block.length} bytes is not a bucket size`);
  const n = new DataView(block.buffer, block.byteOffset, block.byteLength).getUint32(lead);
  if (lead + 4 + n > block.length) throw new Error(`failed to unpad: length field ${n} overruns the ${block.length}-byte block`);
  for (let i = lead + 4 + n; i < block.length; i++) {
    if (block[i] !== 0) throw new Error('failed to unpad: padding is not zero');
  }
  return block.subarray(lead + 4, lead + 4 + n);
}

// pad returns data padded to its plaintext bucket.
export function pad(data) {
  return padTo(data, BUCKETS);
}

// unpad returns the data inside a padded plaintext block.
export function unpad(block) {
  return unpadFrom(block, BUCKETS);
}
