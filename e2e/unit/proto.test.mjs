import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as p from '../../static/js/proto.mjs';
import { FRAME_BUCKETS } from '../../static/js/pad.mjs';

test('encodeSend puts the channel first', () => {
  assert.deepEqual(p.encodeSend(3, new Uint8Array([9, 8])), new Uint8Array([3, 9, 8]));
  assert.throws(() => p.encodeSend(0, new Uint8Array([1])), /bad channel/);
  assert.throws(() => p.encodeSend(256, new Uint8Array([1])), /bad channel/);
  assert.throws(() => p.encodeSend(1, new Uint8Array(0)), /empty payload/);
});

test('decodeDeliver reads the example frame of protocol.md §8', () => {
  const b = new Uint8Array([1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 1, 0x63, 0x74]);
  const f = p.decodeDeliver(b.buffer);
  assert.equal(f.ch, 1);
  assert.equal(f.seq, 2);
  assert.equal(f.from, 1);
  assert.deepEqual(f.payload, new Uint8Array([0x63, 0x74]));
  assert.throws(() => p.decodeDeliver(new Uint8Array(13)), /too short/);
  const huge = b.slice();
  huge[1] = 0xff;
  assert.throws(() => p.decodeDeliver(huge), /out of range/);
});

test('parseControl checks required fields', () => {
  const m = p.parseControl('{"t":"joined","id":1,"ch":1,"room":"R","cap":"C","member":1,"resume":"T","seq":0,"max":2,"members":[1]}');
  assert.equal(m.member, 1);
  assert.throws(() => p.parseControl('{"t":"joined","ch":1}'), /lacks "room"/);
  assert.throws(() => p.parseControl('[1]'), /not an object/);
  assert.throws(() => p.parseControl('{'), /failed to parse/);
  assert.equal(p.parseControl('{"t":"future","x":1}').t, 'future');
});

test('envelope round-trips and refuses garbage', () => {
  const body = new Uint8Array([1, 2, 3]);
  const e = p.decodeEnvelope(p.encodeEnvelope({ k: 'file', n: 'привет.txt' }, body));
  assert.equal(e.header.n, 'привет.txt');
  assert.deepEqual(e.body, body);
  assert.throws(() => p.decodeEnvelope(new Uint8Array([0, 50, 1])), /overruns/);
  assert.throws(() => p.decodeEnvelope(p.encodeEnvelope({ x: 1 })), /lacks a kind/);
});

test('base64url and invite links', () => {
  const bytes = new Uint8Array(32).map((_, i) => i * 8);
  assert.deepEqual(p.unb64u(p.b64u(bytes)), bytes);
  assert.ok(!/[+/=]/.test(p.b64u(bytes)));
  const inv = { room: 'A'.repeat(22), cap: 'b'.repeat(43), secret: p.b64u(bytes) };
  assert.deepEqual(p.parseInvite(p.inviteFragment(inv)), inv);
  assert.equal(p.parseInvite('#'), null);
  assert.throws(() => p.parseInvite('#r=short&c=' + 'b'.repeat(43) + '&k=' + 'c'.repeat(43)), /bad room id/);
});

test('frame payloads are padded to the frame buckets and round-trip', () => {
  for (const n of [0, 1, 1018, 1019, 2042, 4000, 8186, 8187, 24000, 49146, 49147, 65530]) {
    const body = new Uint8Array(n).map((_, i) => (i * 13 + 5) & 0xff);
    const enc = p.encodePayload(p.KIND_PGP, body);
    assert.equal(enc[0], p.PADDED);
    assert.equal(enc.length, FRAME_BUCKETS.find((b) => 1 + 4 + 1 + n <= b), `frame size for a ${n}-byte body`);
    const dec = p.decodePayload(enc);
    assert.equal(dec.kind, p.KIND_PGP);
    assert.equal(dec.padded, true);
    assert.deepEqual(dec.body, body);
  }
  assert.equal(p.decodePayload(p.encodePayload(p.KIND_KEY, new Uint8Array([1, 2]))).kind, p.KIND_KEY);
  assert.throws(() => p.encodePayload(p.KIND_PGP, new Uint8Array(65531)), /failed to encode payload: .*over the/);
  assert.throws(() => p.encodePayload(p.PADDED, new Uint8Array(1)), /unknown kind/);
});

test('unpadded payloads of older clients are still read', () => {
  const d = p.decodePayload(new Uint8Array([p.KIND_PGP, 9, 8, 7]));
  assert.deepEqual(d, { kind: p.KIND_PGP, body: new Uint8Array([9, 8, 7]), padded: false });
  assert.equal(p.decodePayload(new Uint8Array([p.KIND_KEY])).body.length, 0);
});

test('malformed padded payloads are clear errors', () => {
  const good = p.encodePayload(p.KIND_PGP, new Uint8Array([1, 2, 3]));
  assert.throws(() => p.decodePayload(good.subarray(0, 1000)), /failed to decode payload: .*1000 bytes is not a bucket size/);
  const over = good.slice();
  new DataView(over.buffer).setUint32(1, 1020); // 5 + 1020 > 1024
  assert.throws(() => p.decodePayload(over), /failed to decode payload: .*length field 1020 overruns/);
  const huge = good.slice();
  new DataView(huge.buffer).setUint32(1, 0xffffffff);
  assert.throws(() => p.decodePayload(huge), /overruns/);
  const dirty = good.slice();
  dirty[1023] = 1;
  assert.throws(() => p.decodePayload(dirty), /padding is not zero/);
  const empty = good.slice();
  new DataView(empty.buffer).setUint32(1, 0);
  empty[5] = 0;
  empty.fill(0, 5);
  assert.throws(() => p.decodePayload(empty), /no kind inside/);
  assert.throws(() => p.decodePayload(new Uint8Array([0x09, 1])), /unknown first byte 9/);
  assert.throws(() => p.decodePayload(new Uint8Array(0)), /empty/);
});
