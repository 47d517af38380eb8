import { test } from 'node:test';
import assert from 'node:assert/strict';
import { deriveKxKey, seal, open } from '../../static/js/kx.mjs';

test('a key announcement opens only with the same secret and room', async () => {
  const secret = crypto.getRandomValues(new Uint8Array(32));
  const k = await deriveKxKey(secret, 'ROOM1');
  const sealed = await seal(k, 'ROOM1', { member: 2, pub: 'KEY' });
  assert.deepEqual(await open(await deriveKxKey(secret, 'ROOM1'), 'ROOM1', sealed), { member: 2, pub: 'KEY' });
  await assert.rejects(open(await deriveKxKey(secret, 'ROOM2'), 'ROOM2', sealed), /not made with this invite secret/);
  const other = await deriveKxKey(crypto.getRandomValues(new Uint8Array(32)), 'ROOM1');
  await assert.rejects(open(other, 'ROOM1', sealed), /not made with this invite secret/);
  const tampered = sealed.slice();
  tampered[20] ^= 1;
  await assert.rejects(open(k, 'ROOM1', tampered), /not made with this invite secret/);
  await assert.rejects(open(k, 'ROOM1', new Uint8Array(5)), /too short/);
});
