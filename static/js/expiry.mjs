// Module expiry removes disappearing messages and files from the page when their time is up, and keeps each
// one's countdown (its .countdown element) current: one timer for the whole page, ticking once a second.

const items = new Set(); // {el, at, onGone}
let timer = 0;

// left is the whole seconds from now to at (ms), never below 0.
export function left(at, now) {
  return Math.max(0, Math.ceil((at - now) / 1000));
}

// clock writes s seconds as a countdown: 0:09, 4:59, 1:00:00.
export function clock(s) {
  const two = (n) => String(n).padStart(2, '0');
  const hh = Math.floor(s / 3600);
  const mm = Math.floor((s % 3600) / 60);
  return hh ? `${hh}:${two(mm)}:${two(s % 60)}` : `${mm}:${two(s % 60)}`;
}

// expire removes el ttl seconds after now (onGone runs then, e.g. to revoke a blob: URL) and shows the time left
// in el's .countdown elements meanwhile.
export function expire(el, ttl, { now = Date.now(), onGone = () => {} } = {}) {
  const item = { el, at: now + ttl * 1000, onGone };
  items.add(item);
  show(item, now);
  if (!timer && typeof setInterval === 'function') timer = setInterval(() => tick(Date.now()), 1000);
  return item;
}

function show(item, now) {
  const text = clock(left(item.at, now));
  for (const c of item.el.querySelectorAll('.countdown')) if (c.textContent !== text) c.textContent = text;
}

// tick brings every countdown to now and removes what is due; it returns how many it removed.
export function tick(now) {
  let gone = 0;
  for (const item of items) {
    if (now >= item.at || !item.el.isConnected) {
      items.delete(item);
      item.el.remove();
      item.onGone();
      gone++;
    } else show(item, now);
  }
  if (!items.size && timer) {
    clearInterval(timer);
    timer = 0;
  }
  return gone;
}

// pending is how many elements wait for their time (tests).
export function pending() {
  return items.size;
}
