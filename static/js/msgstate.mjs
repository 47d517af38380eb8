// Module msgstate shows a sent message's state in its bubble — sending, waiting for the contact, sent,
// delivered, not sent with Retry — as the outbox reports it (outbox.mjs).
import { h, tx } from './ui.mjs';
import { errorText } from './i18n.mjs';

// stateSpan is the state mark a bubble of one's own carries in its meta line, filled by showState.
export function stateSpan() {
  return h('span.state', { role: 'status' });
}

// showState puts entry's state on its bubble in log (if it shows there); retry, when given, is offered on a
// failed message.
export function showState(log, entry, retry = null) {
  const el = log?.querySelector(`.msg.mine[data-id="${CSS.escape(entry.id)}"]`);
  if (!el) return;
  el.dataset.state = entry.state;
  let mark = el.querySelector('.state');
  if (!mark) {
    mark = stateSpan();
    (el.querySelector('.meta') ?? el).append(mark);
  }
  const key = { pending: 'state_pending', queued: 'state_pending', sent: 'state_sent', delivered: 'state_delivered', failed: 'state_failed', waiting: 'state_waiting' }[entry.state];
  const kids = [' · ', tx(key)];
  if (entry.state === 'sent' && entry.boxIds?.length) kids.push(' ', tx('state_in_mailbox'));
  if (entry.state === 'failed') {
    if (entry.why) kids.push(h('span.why', {}, ` (${errorText(entry.why)})`));
    if (retry) kids.push(' ', h('button.retry', { type: 'button', i18n: 'retry', onclick: () => retry(entry.id) }));
  }
  mark.replaceChildren(...kids);
}
