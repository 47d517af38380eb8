import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as p from '../../static/js/proto.mjs';

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
