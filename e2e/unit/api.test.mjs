// Unit: the API client asks again after a busy answer (503 with Retry-After), a bounded number of times.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { call, BUSY_TRIES, APIError } from '../../static/js/api.mjs';

function stubFetch(answers) {
  const seen = [];
  globalThis.fetch = async (url, init) => {
    seen.push({ url, init });
    const a = answers[Math.min(seen.length - 1, answers.length - 1)];
    return new Response(JSON.stringify(a.body), { status: a.status, headers: a.headers ?? {} });
  };
  return seen;
}

const busy = { status: 503, body: { error: 'busy', msg: 'busy' }, headers: { 'Retry-After': '1' } };

test('a busy login is asked again after Retry-After', async () => {
  const seen = stubFetch([busy, busy, { status: 200, body: { user: { username: 'alice' } } }]);
  const waits = [];
  const r = await call('POST', 'login', { username: 'alice', password: 'x' }, { sleep: async (ms) => waits.push(ms) });
  assert.equal(r.user.username, 'alice');
  assert.equal(seen.length, 3);
  assert.deepEqual(waits, [1000, 1000]);
  assert.equal(seen[2].init.body, JSON.stringify({ username: 'alice', password: 'x' }));
});

test('busy for good gives up after BUSY_TRIES and says busy', async () => {
  const seen = stubFetch([busy]);
  await assert.rejects(call('POST', 'login', {}, { sleep: async () => {} }), (e) => e instanceof APIError && e.code === 'busy' && e.status === 503);
  assert.equal(seen.length, BUSY_TRIES);
});

test('a 503 without Retry-After and other errors are not asked again', async () => {
  const seen = stubFetch([{ status: 503, body: { error: 'too_many_accounts' } }]);
  await assert.rejects(call('POST', 'register', {}, { sleep: async () => {} }), (e) => e.code === 'too_many_accounts');
  assert.equal(seen.length, 1);
});
