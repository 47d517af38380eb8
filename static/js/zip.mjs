// Module zip writes and reads "stored" (uncompressed) ZIP archives, enough to export and import a key pair.
//
// Only method 0 (stored) is written or read: key files are armored text and small, and a
// decompressor would be code we do not need. Limits keep a hostile archive from using much memory.

export const MAX_ENTRIES = 16;
export const MAX_ENTRY_BYTES = 1 << 20; // 1 MiB: an armored RSA-4096 key pair is ~7 KiB.

const SIG_LOCAL = 0x04034b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_END = 0x06054b50;

let crcTable = null;

// crc32 is the ZIP (IEEE) CRC-32 of bytes.
export function crc32(bytes) {
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = crcTable[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

// dosTime encodes a Date as the MS-DOS time and date fields ZIP uses.
function dosTime(d) {
  const time = (d.getHours() << 11) | (d.getMinutes() << 5) | (d.getSeconds() >> 1);
  const date = ((Math.max(d.getFullYear(), 1980) - 1980) << 9) | ((d.getMonth() + 1) << 5) | d.getDate();
  return { time, date };
}

// writeZip returns a ZIP archive holding files, an array of {name, data} with data a Uint8Array or
// string. Names are stored as UTF-8 (general purpose flag bit 11).
export function writeZip(files, when = new Date()) {
  if (files.length > MAX_ENTRIES) throw new RangeError(`failed to write zip: more than ${MAX_ENTRIES} files`);
  const enc = new TextEncoder();
  const { time, date } = dosTime(when);
  const locals = [];
  const centrals = [];
  let offset = 0;
  for (const f of files) {
    const name = enc.encode(f.name);
    const data = typeof f.data === 'string' ? enc.encode(f.data) : f.data;
    const crc = crc32(data);
    const local = new Uint8Array(30 + name.length + data.length);
    const lv = new DataView(local.buffer);
    lv.setUint32(0, SIG_LOCAL, true);
    lv.setUint16(4, 20, true); // version needed: 2.0
    lv.setUint16(6, 0x0800, true); // UTF-8 names
    lv.setUint16(8, 0, true); // stored
    lv.setUint16(10, time, true);
    lv.setUint16(12, date, true);
    lv.setUint32(14, crc, true);
    lv.setUint32(18, data.length, true);
    lv.setUint32(22, data.length, true);
    lv.setUint16(26, name.length, true);
    lv.setUint16(28, 0, true);
    local.set(name, 30);
    local.set(data, 30 + name.length);
    const central = new Uint8Array(46 + name.length);
    const cv = new DataView(central.buffer);
    cv.setUint32(0, SIG_CENTRAL, true);
    cv.setUint16(4, 20, true);
    cv.setUint16(6, 20, true);
    cv.setUint16(8, 0x0800, true);
    cv.setUint16(10, 0, true);
    cv.setUint16(12, time, true);
    cv.setUint16(14, date, true);
    cv.setUint32(16, crc, true);
    cv.setUint32(20, data.length, true);
    cv.setUint32(24, data.length, true);
    cv.setUint16(28, name.length, true);
    cv.setUint32(42, offset, true);
    central.set(name, 46);
    locals.push(local);
    centrals.push(central);
    offset += local.length;
  }
  const cdSize = centrals.reduce((s, c) => s + c.length, 0);
  const end = new Uint8Array(22);
  const ev = new DataView(end.buffer);
  ev.setUint32(0, SIG_END, true);
  ev.setUint16(8, files.length, true);
  ev.setUint16(10, files.length, true);
  ev.setUint32(12, cdSize, true);
  ev.setUint32(16, offset, true);
  const out = new Uint8Array(offset + cdSize + end.length);
  let p = 0;
  for (const part of [...locals, ...centrals, end]) {
    out.set(part, p);
    p += part.length;
  }
  return out;
}

// readZip returns the files of a stored ZIP archive as a Map from name to Uint8Array. It throws
// an Error saying what is wrong for anything else: not a ZIP, compressed or encrypted entries,
// a bad CRC, entries over the limits, or duplicate names.
export function readZip(bytes) {
  if (!(bytes instanceof Uint8Array)) throw new TypeError('failed to read zip: input must be a Uint8Array');
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let endAt = -1;
  // The end record is 22 bytes plus a comment of at most 65535 bytes.
  for (let i = bytes.length - 22; i >= 0 && i >= bytes.length - 22 - 65535; i--) {
    if (v.getUint32(i, true) === SIG_END) {
      endAt = i;
      break;
    }
  }
  if (endAt < 0) throw new Error('failed to read zip: not a zip archive (no end record)');
  const count = v.getUint16(endAt + 10, true);
  const cdSize = v.getUint32(endAt + 12, true);
  const cdOff = v.getUint32(endAt + 16, true);
  if (count > MAX_ENTRIES) throw new Error(`failed to read zip: more than ${MAX_ENTRIES} entries`);
  if (cdOff + cdSize > endAt) throw new Error('failed to read zip: central directory out of range');
  const dec = new TextDecoder('utf-8', { fatal: true });
  const files = new Map();
  let p = cdOff;
  for (let i = 0; i < count; i++) {
    if (p + 46 > endAt || v.getUint32(p, true) !== SIG_CENTRAL) throw new Error('failed to read zip: bad central directory entry');
    const flags = v.getUint16(p + 8, true);
    const method = v.getUint16(p + 10, true);
    const crc = v.getUint32(p + 16, true);
    const csize = v.getUint32(p + 20, true);
    const usize = v.getUint32(p + 24, true);
    const nlen = v.getUint16(p + 28, true);
    const xlen = v.getUint16(p + 30, true);
    const clen = v.getUint16(p + 32, true);
    const lho = v.getUint32(p + 42, true);
    if (p + 46 + nlen > endAt) throw new Error('failed to read zip: entry name out of range');
    const name = dec.decode(bytes.subarray(p + 46, p + 46 + nlen));
    if (flags & 1) throw new Error(`failed to read zip: ${name} is encrypted`);
    if (method !== 0) throw new Error(`failed to read zip: ${name} is compressed (method ${method}); only stored entries are supported`);
    if (csize !== usize || usize > MAX_ENTRY_BYTES) throw new Error(`failed to read zip: ${name} is over ${MAX_ENTRY_BYTES} bytes`);
    if (lho + 30 > cdOff || v.getUint32(lho, true) !== SIG_LOCAL) throw new Error(`failed to read zip: bad local header for ${name}`);
    const start = lho + 30 + v.getUint16(lho + 26, true) + v.getUint16(lho + 28, true);
    if (start + usize > cdOff) throw new Error(`failed to read zip: ${name} data out of range`);
    const data = bytes.slice(start, start + usize);
    if (crc32(data) !== crc) throw new Error(`failed to read zip: ${name} has a bad CRC`);
    if (files.has(name)) throw new Error(`failed to read zip: duplicate entry ${name}`);
    files.set(name, data);
    p += 46 + nlen + xlen + clen;
  }
  return files;
}
