// Module pgp-vectors reads testdata/pgp: the protocol v1 (dialogs) vectors shared by Go and the browser.
import { readFileSync } from 'node:fs';

export const PGP_DIR = new URL('../../testdata/pgp/', import.meta.url);
export const PASS = 'cleanrelay-vector-pass1!'; // every key ZIP's passphrase

// plainOf is an envelope with an empty body: u16 length ‖ JSON header.
export function plainOf(text) {
  const j = new TextEncoder().encode(text);
  const out = new Uint8Array(2 + j.length);
  new DataView(out.buffer).setUint16(0, j.length);
  out.set(j, 2);
  return out;
}

// readMessages returns the "message: FROM TO PLAIN MSG" lines of file; any other key but comment throws.
export function readMessages(file) {
  const out = [];
  for (const line of readFileSync(new URL(file, PGP_DIR), 'utf8').split('\n')) {
    if (!line) continue;
    const i = line.indexOf(': ');
    const [k, v] = [line.slice(0, i), line.slice(i + 2)];
    if (k === 'comment') continue;
    if (k !== 'message') throw new Error(`${file}: unknown key ${k}`);
    const [from, to, plain, msg] = v.split(' ');
    out.push({ from, to, plain: Buffer.from(plain, 'hex'), msg: new Uint8Array(Buffer.from(msg, 'hex')) });
  }
  return out;
}
