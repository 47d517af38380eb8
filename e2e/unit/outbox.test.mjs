// Unit tests of the outbox: a sent message's states, retries while the relay is out of reach, receipts.
import { test, mock } from 'node:test';
import assert from 'node:assert/strict';
import { Outbox, PENDING_FOR, RETRY_EVERY, WAIT_RETRY, dialogOutbox } from '../../static/js/outbox.mjs';

const offline = () => Object.assign(new Error('failed to reach the relay'), { code: 'network' });

function watch(box) {
  const seen = [];
  box.view = (e) => seen.push(e.state);
  return seen;
}

test('pending, then sent, then delivered once every peer confirmed', async () => {
  const box = new Outbox();
  box.attempt = async () => 'sent';
  const seen = watch(box);
  await box.send({ id: 'm1', kind: 'msg' }, [2, 3]);
  box.receipt(2, ['m1']);
  assert.equal(box.items.get('m1').state, 'sent', 'one of two peers is not delivered');
  box.receipt(3, ['m1', 'unknown']);
  assert.deepEqual(seen, ['pending', 'sent', 'delivered']);
  box.receipt(3, ['m1']);
  assert.equal(seen.length, 3, 'a repeated receipt changed something');
});

test('typed while the relay is out of reach: pending, retried, sent on reconnect', async () => {
  mock.timers.enable({ apis: ['setTimeout', 'Date'] });
  try {
    const box = new Outbox();
    let up = false;
    let tries = 0;
    box.attempt = async () => {
      tries++;
      if (!up) throw offline();
      return 'sent';
    };
    const seen = watch(box);
    await box.send({ id: 'm1', kind: 'msg' }, [1]);
    assert.equal(box.items.get('m1').state, 'pending');
    mock.timers.tick(RETRY_EVERY);
    await Promise.resolve();
    assert.equal(tries, 2, 'not retried');
    up = true;
    box.wake(); // the connection came back
    await new Promise((r) => setImmediate(r));
    assert.equal(box.items.get('m1').state, 'sent');
    assert.deepEqual(seen.filter((s, i) => s !== seen[i - 1]), ['pending', 'sent']);
  } finally {
    mock.timers.reset();
  }
});

test('out of reach for too long: failed, and Retry sends it', async () => {
  mock.timers.enable({ apis: ['setTimeout', 'Date'] });
  try {
    const box = new Outbox();
    let up = false;
    box.attempt = async () => {
      if (!up) throw offline();
      return 'sent';
    };
    await box.send({ id: 'm1', kind: 'msg' }, [1]);
    for (let t = 0; t <= PENDING_FOR; t += RETRY_EVERY) {
      mock.timers.tick(RETRY_EVERY);
      await new Promise((r) => setImmediate(r));
    }
    const e = box.items.get('m1');
    assert.equal(e.state, 'failed');
    assert.equal(e.why.code, 'network');
    up = true;
    await box.retry('m1');
    assert.equal(e.state, 'sent');
  } finally {
    mock.timers.reset();
  }
});

test('a refusal fails at once; an ended room fails what waits; undeliverable fails what the relay wiped', async () => {
  const box = new Outbox();
  box.attempt = async () => {
    throw Object.assign(new Error('full'), { code: 'mailbox_full' });
  };
  await box.send({ id: 'm1', kind: 'msg' }, [1]);
  assert.equal(box.items.get('m1').state, 'failed');
  box.attempt = async (e) => {
    e.boxIds = ['box1'];
    return 'sent';
  };
  await box.send({ id: 'm2', kind: 'msg' }, [1]);
  box.undeliverable(['box1'], { code: 'key_changed' });
  assert.equal(box.items.get('m2').state, 'failed');
  box.attempt = async () => 'queued';
  await box.send({ id: 'm3', kind: 'msg' }, [1]);
  box.stop();
  box.fail({ code: 'ended' });
  assert.equal(box.items.get('m3').state, 'failed');
  await box.send({ id: 'm4', kind: 'msg' }, [1]);
  assert.equal(box.items.get('m4').state, 'failed', 'a send with no room to send in stayed pending');
});

test('a dialog keeps one outbox per user and peer', () => {
  assert.equal(dialogOutbox('alice', 'bob'), dialogOutbox('alice', 'bob'));
  assert.notEqual(dialogOutbox('alice', 'bob'), dialogOutbox('carol', 'bob'));
});

test('a member who left is not waited for; a message nobody confirmed stays sent', async () => {
  const box = new Outbox();
  box.attempt = async () => 'sent';
  await box.send({ id: 'm1', kind: 'msg' }, [2, 3]);
  await box.send({ id: 'm2', kind: 'msg' }, [3]);
  box.receipt(2, ['m1']);
  box.gone(3);
  assert.equal(box.items.get('m1').state, 'delivered');
  assert.equal(box.items.get('m2').state, 'sent');
});

test('no prekey of the contact to be had: waiting, never failed by time, tried again, sent when the contact is there', async () => {
  mock.timers.enable({ apis: ['setTimeout', 'Date'] });
  try {
    const box = new Outbox();
    let there = false;
    let tries = 0;
    box.attempt = async () => {
      tries++;
      if (!there) throw Object.assign(new Error('waiting for bob'), { code: 'waiting_contact' });
      return 'sent';
    };
    await box.send({ id: 'm1', kind: 'msg' }, [0]);
    assert.equal(box.items.get('m1').state, 'waiting');
    mock.timers.tick(PENDING_FOR + WAIT_RETRY);
    await new Promise((r) => setImmediate(r));
    assert.equal(tries, 2, 'not tried again after WAIT_RETRY');
    assert.equal(box.items.get('m1').state, 'waiting', 'a waiting message failed by time');
    there = true;
    box.wake(); // the contact came into the dialog
    await new Promise((r) => setImmediate(r));
    assert.equal(box.items.get('m1').state, 'sent');
    box.fail(new Error('ended'));
    assert.equal(box.items.get('m1').state, 'sent');
  } finally {
    mock.timers.reset();
  }
});
