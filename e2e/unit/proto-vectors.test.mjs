// Runs the wire protocol test vectors of testdata/protocol against static/js/proto.mjs, as the Go tests run
// them against package relay/protocol, so that the browser's protocol module cannot drift from the relay's.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import * as p from '../../static/js/proto.mjs';

const DIR = new URL('../../testdata/protocol/', import.meta.url);

// The headers each kind of vector may have, besides kind, expect and comment (as relay/internal/vectors).
const KEYS = {
  constants: ['subprotocol', 'send header', 'deliver header', 'max control', 'max seq'],
  deliver: ['frame', 'ch', 'seq', 'from', 'payload', 'error'],
  send: ['ch', 'payload', 'frame', 'error'],
  control: ['message', 'type', 'error'],
  request: ['message', 'type', 'code'],
};

function parseVector(name, text) {
  const h = {};
  for (const line of text.replace(/\n$/, '').split('\n')) {
    const i = line.indexOf(':');
    if (i < 0 || (line[i + 1] !== undefined && line[i + 1] !== ' ')) throw new Error(`${name}: line ${JSON.stringify(line.slice(0, 40))} is not key: value`);
    const k = line.slice(0, i);
    if (k in h) throw new Error(`${name}: header ${k} twice`);
    h[k] = line.slice(i + 2);
  }
  const allowed = KEYS[h.kind];
  if (!allowed) throw new Error(`${name}: unknown kind ${JSON.stringify(h.kind)}`);
  if (h.expect !== 'success' && h.expect !== 'error') throw new Error(`${name}: expect must be success or error`);
  for (const k of Object.keys(h)) {
    if (!['kind', 'expect', 'comment', ...allowed].includes(k)) throw new Error(`${name}: unknown header ${JSON.stringify(k)} for kind ${h.kind}`);
  }
  return { name, kind: h.kind, success: h.expect === 'success', h };
}

function unhex(s) {
  if (!/^([0-9a-f]{2})*$/.test(s)) throw new Error(`bad hex ${s.slice(0, 16)}`);
  return Uint8Array.from(s.match(/../g) ?? [], (x) => parseInt(x, 16));
}

// run returns the vector's outcome from proto.mjs: what it checks on success, and the error it threw.
function run(v) {
  const { h } = v;
  switch (v.kind) {
    case 'constants':
      assert.equal(p.SUBPROTOCOL, h.subprotocol);
      assert.equal(p.SEND_HEADER, Number(h['send header']));
      assert.equal(p.DELIVER_HEADER, Number(h['deliver header']));
      assert.equal(p.MAX_CONTROL, Number(h['max control']));
      assert.equal(p.MAX_SEQ, Number(h['max seq']));
      assert.equal(String(p.MAX_SEQ), h['max seq']);
      return;
    case 'deliver': {
      const f = p.decodeDeliver(unhex(h.frame));
      assert.deepEqual([String(f.ch), String(f.seq), String(f.from)], [h.ch, h.seq, h.from]);
      assert.deepEqual(f.payload, unhex(h.payload));
      return;
    }
    case 'send':
      assert.deepEqual(p.encodeSend(Number(h.ch), unhex(h.payload)), unhex(h.frame));
      return;
    case 'control':
      assert.equal(p.parseControl(h.message).t, h.type);
  }
}

const vectors = readdirSync(DIR).filter((n) => n.endsWith('.txt')).sort()
  .map((n) => parseVector(n, readFileSync(new URL(n, DIR), 'utf8')));

test('the protocol vectors are there', () => {
  assert.ok(vectors.filter((v) => v.kind !== 'request').length >= 10);
});

for (const v of vectors) {
  // Request vectors are the relay's parser's (relay/wire_vectors_test.go): this client sends requests only.
  if (v.kind === 'request') continue;
  test(`vector ${v.name}`, () => {
    if (v.success) run(v);
    else assert.throws(() => run(v), (e) => e.message.includes(v.h.error), `want an error with ${JSON.stringify(v.h.error)}`);
  });
}

test('a vector with a header its kind does not have is refused', () => {
  assert.throws(() => parseVector('t', 'kind: send\nexpect: success\nch: 1\npayload: 01\nframe: 0101\nseq: 4\n'), /unknown header/);
  assert.throws(() => parseVector('t', 'kind: send\nch: 1\n'), /expect/);
});
