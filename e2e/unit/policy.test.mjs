import { test } from 'node:test';
import assert from 'node:assert/strict';
import { missing } from '../../static/js/policy.mjs';

test('password policy names what is missing', () => {
  assert.deepEqual(missing('Abcdef1!'), []);
  assert.deepEqual(missing('Пароль12#'), []);
  assert.deepEqual(missing('abc'), ['length', 'upper', 'digit', 'special']);
  assert.deepEqual(missing('ABCDEFG1!'), ['lower']);
  assert.deepEqual(missing('Abcdefgh!'), ['digit']);
  assert.deepEqual(missing('Abcdefg12'), ['special']);
  assert.deepEqual(missing(''), ['length', 'upper', 'lower', 'digit', 'special']);
});
