import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TicketKeeper, TICKET_MARGIN_MS } from '../../static/js/ticket.mjs';

// A fake clock and a fake socket: the keeper only listens for 'open' and 'close'.
function setup(lifetimeS = 300) {
  const clock = { t: 1_000_000 };
  let proofs = 0;
  const keeper = new TicketKeeper(async () => {
    proofs++;
    return { fingerprint: 'F', ticket_lifetime: lifetimeS };
  }, { now: () => clock.t });
  const socket = async () => {
    const ws = new EventTarget();
    (await keeper.before())(ws);
    return ws;
  };
  return { clock, keeper, socket, proofs: () => proofs };
}

const lifetimeMs = 300_000 - TICKET_MARGIN_MS;

test('one proof serves every socket while one is open, however long', async () => {
  const { clock, socket, proofs } = setup();
  const a = await socket();
  a.dispatchEvent(new Event('open'));
  clock.t += 10 * lifetimeMs;
  const b = await socket();
  b.dispatchEvent(new Event('open'));
  a.dispatchEvent(new Event('close'));
  clock.t += 10 * lifetimeMs;
  await socket();
  assert.equal(proofs(), 1);
});

test('after the last socket closed the ticket is good for its lifetime less the margin, then proved again', async () => {
  const { clock, socket, proofs } = setup();
  const a = await socket();
  a.dispatchEvent(new Event('open'));
  clock.t += 2 * lifetimeMs;
  a.dispatchEvent(new Event('close'));
  clock.t += lifetimeMs - 1;
  const b = await socket(); // a reconnect within the lifetime: no signature
  assert.equal(proofs(), 1);
  b.dispatchEvent(new Event('open'));
  b.dispatchEvent(new Event('close'));
  clock.t += lifetimeMs;
  await socket();
  assert.equal(proofs(), 2, 'a ticket past its lifetime was used');
});

test('an unused ticket expires a lifetime after the proof', async () => {
  const { clock, socket, proofs } = setup();
  await socket(); // never opens, never closes (still connecting)
  clock.t += lifetimeMs;
  await socket();
  assert.equal(proofs(), 2);
});

test('a socket that closes without opening, or forget, makes the next one prove the key', async () => {
  const { socket, keeper, proofs } = setup();
  const a = await socket();
  a.dispatchEvent(new Event('open'));
  const refused = await socket();
  refused.dispatchEvent(new Event('close'));
  await socket();
  assert.equal(proofs(), 2, 'a refused handshake did not force a proof');
  // The old ticket's socket closing later does not make the new ticket look unused.
  a.dispatchEvent(new Event('close'));
  keeper.forget();
  await socket();
  assert.equal(proofs(), 3, 'forget did not force a proof');
});

test('a failed proof rejects and leaves no ticket', async () => {
  const keeper = new TicketKeeper(async () => {
    throw new Error('no_key');
  });
  await assert.rejects(keeper.before(), /no_key/);
  assert.equal(keeper.good(), false);
});
