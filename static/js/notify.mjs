// Module notify keeps a logged-in WebSocket session open while the main screen shows, to hear that another
// user opened a dialog with this one, left a message in the mailbox, or changed its key (the relay's `dialog`,
// `mail` and `key` notices, docs/accounts.md §8).
//
// The session holds no room, so the relay closes it after its idle timeout (1008 `idle`, 2 min by default):
// the watch then opens a new one (with the same ticket while it is good: ticket.mjs) on the backoff schedule, which starts over
// at every `hello`. A `dialog` sent in the moment between two sessions is missed; the dialog still shows up
// when the user searches for its peer or the peer writes again.
import { SUBPROTOCOL, parseControl } from './proto.mjs';
import { Backoff } from './backoff.mjs';

// validName accepts what can be a normalized username (3–32 characters after normalization, docs/accounts.md):
// anything else in `from` is a broken or hostile message, not a dialog.
export function validName(s) {
  if (typeof s !== 'string') return false;
  const n = [...s].length; // characters (code points), as the relay counts them
  return n >= 3 && n <= 32 && !/[\u0000-\u001f\u007f\s]/u.test(s);
}

export class DialogWatch extends EventTarget {
  // beforeOpen gets the session ticket (docs/accounts.md §7); backoff is injectable for tests.
  constructor(url, beforeOpen, { backoff = new Backoff() } = {}) {
    super();
    this.url = url;
    this.beforeOpen = beforeOpen;
    this.backoff = backoff;
    this.ws = null;
    this.timer = 0;
    this.stopped = true;
    this.live = false;
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  async connect() {
    if (this.stopped) return;
    let track;
    try {
      track = await this.beforeOpen();
    } catch {
      this.later();
      return;
    }
    if (this.stopped) return;
    const ws = new WebSocket(this.url, SUBPROTOCOL);
    if (typeof track === 'function') track(ws);
    this.ws = ws;
    ws.onmessage = (ev) => {
      if (typeof ev.data !== 'string') return;
      let m;
      try {
        m = parseControl(ev.data);
      } catch {
        return;
      }
      if (m.t === 'hello') {
        this.backoff.reset();
        this.setLive(true);
      } else if (m.t === 'dialog' && validName(m.from)) {
        this.emit('dialog', { from: m.from });
      } else if (m.t === 'mail' && validName(m.from)) {
        this.emit('mail', { from: m.from });
      } else if (m.t === 'key' && validName(m.user)) {
        this.emit('key', { user: m.user });
      }
    };
    ws.onclose = () => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.setLive(false);
      this.later();
    };
  }

  setLive(v) {
    if (this.live === v) return;
    this.live = v;
    this.emit('live', v);
  }

  later() {
    if (!this.stopped) this.timer = setTimeout(() => this.connect(), this.backoff.next());
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    const ws = this.ws;
    this.ws = null;
    this.setLive(false);
    try {
      ws?.close(1000);
    } catch {
      /* already closed */
    }
  }
}
