import { test } from 'node:test';
import assert from 'node:assert/strict';
import { missing, missingPassphrase, LONG_PASSPHRASE } from '../../static/js/policy.mjs';

test('password policy names what is missing', () => {
  assert.deepEqual(missing('Abcdef1!'), []);
  assert.deepEqual(missing('Пароль12#'), []);
  assert.deepEqual(missing('abc'), ['length', 'upper', 'digit', 'special']);
  assert.deepEqual(missing('ABCDEFG1!'), ['lower']);
  assert.deepEqual(missing('Abcdefgh!'), ['digit']);
  assert.deepEqual(missing('Abcdefg12'), ['special']);
  assert.deepEqual(missing(''), ['length', 'upper', 'lower', 'digit', 'special']);
});

test('account passwords get no long-passphrase exception', () => {
  assert.deepEqual(missing('correct horse battery staple'), ['upper', 'digit']);
  // A space is a special character, as the relay counts it (docs/accounts.md §3).
  assert.deepEqual(missing('Abcdef 12'), []);
});

test('a key passphrase of 15+ characters needs no character classes', () => {
  assert.equal(LONG_PASSPHRASE, 15);
  assert.deepEqual(missingPassphrase('correct horse battery staple'), []);
  assert.deepEqual(missingPassphrase('правильная лошадь'), []);
  assert.deepEqual(missingPassphrase('a'.repeat(15)), []);
  // 14 characters are short: the class rules apply again.
  assert.deepEqual(missingPassphrase('a'.repeat(14)), ['upper', 'digit', 'special']);
  // Padding with spaces does not make a passphrase long.
  assert.deepEqual(missingPassphrase(`   ${'a'.repeat(12)}   `), ['upper', 'digit']);
  // Characters, not UTF-16 units: 8 emoji are 16 units but only 8 characters.
  assert.notDeepEqual(missingPassphrase('😀'.repeat(8)), []);
  // A short passphrase that meets the classes is still fine.
  assert.deepEqual(missingPassphrase('Abcdef1!'), []);
});
