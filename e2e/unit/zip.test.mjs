import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeZip, readZip, crc32, MAX_ENTRIES } from '../../static/js/zip.mjs';

test('crc32 matches the standard check value', () => {
  assert.equal(crc32(new TextEncoder().encode('123456789')), 0xcbf43926);
});

test('writeZip then readZip round-trips names and bytes', () => {
  const files = [
    { name: 'a.txt', data: 'hello' },
    { name: 'ключ.asc', data: new Uint8Array([0, 255, 10]) },
    { name: 'empty', data: new Uint8Array(0) },
  ];
  const got = readZip(writeZip(files));
  assert.equal(got.size, 3);
  assert.equal(new TextDecoder().decode(got.get('a.txt')), 'hello');
  assert.deepEqual(got.get('ключ.asc'), new Uint8Array([0, 255, 10]));
  assert.equal(got.get('empty').length, 0);
});

test('python zipfile (an independent reader) reads our archive, and we read its stored archive', () => {
  const dir = mkdtempSync(join(tmpdir(), 'crzip-'));
  try {
    writeFileSync(join(dir, 'ours.zip'), writeZip([{ name: 'k.asc', data: 'KEY DATA' }]));
    const out = execFileSync('python3', ['-c',
      'import zipfile,sys; z=zipfile.ZipFile(sys.argv[1]); assert z.testzip() is None; print(z.read("k.asc").decode())',
      join(dir, 'ours.zip')]).toString().trim();
    assert.equal(out, 'KEY DATA');
    execFileSync('python3', ['-c',
      'import zipfile,sys; z=zipfile.ZipFile(sys.argv[1],"w",zipfile.ZIP_STORED); z.writestr("x/y.txt","from python"); z.close()',
      join(dir, 'theirs.zip')]);
    const got = readZip(new Uint8Array(readFileSync(join(dir, 'theirs.zip'))));
    assert.equal(new TextDecoder().decode(got.get('x/y.txt')), 'from python');
  } finally {
    rmSync(dir, { recursive: true });
  }
});

test('readZip refuses bad archives with a clear error', () => {
  assert.throws(() => readZip(new Uint8Array(10)), /not a zip/);
  const z = writeZip([{ name: 'a', data: 'hello' }]);
  const bad = z.slice();
  bad[30 + 1] ^= 0xff; // flip a data byte
  assert.throws(() => readZip(bad), /bad CRC/);
  const deflated = z.slice();
  const cd = deflated.length - 22 - (46 + 1);
  new DataView(deflated.buffer).setUint16(cd + 10, 8, true);
  assert.throws(() => readZip(deflated), /compressed/);
  const many = Array.from({ length: MAX_ENTRIES + 1 }, (_, i) => ({ name: `f${i}`, data: 'x' }));
  assert.throws(() => writeZip(many), /more than/);
  const dup = writeZip([{ name: 'a', data: 'x' }, { name: 'a', data: 'y' }]);
  assert.throws(() => readZip(dup), /duplicate/);
});
