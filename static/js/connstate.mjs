// Module connstate is the page's one account of the relay connection: connecting, connected, reconnecting or
// offline, and when the next attempt comes. Screens read it (view) and listen to it ('change'); only tracked
// RoomConns (conn.mjs) change it.

// OFFLINE_AFTER is how many reconnection attempts in a row must fail before the page says "offline" rather than
// "reconnecting": a relay-side drop is usually mended by the first attempt, a relay that is gone fails them all.
export const OFFLINE_AFTER = 3;

export const PHASES = ['connecting', 'connected', 'reconnecting', 'offline'];

export class ConnState extends EventTarget {
  constructor() {
    super();
    this.s = { phase: 'connecting', nextAt: 0, failed: 0 };
    this.untrack = () => {};
  }

  get() {
    return this.s;
  }

  set(phase, { nextAt = 0, failed = 0 } = {}) {
    if (!PHASES.includes(phase)) throw new RangeError(`unknown connection phase ${phase}`);
    this.s = { phase, nextAt, failed };
    this.dispatchEvent(new CustomEvent('change', { detail: this.s }));
  }

  // track follows conn (a RoomConn) from now on, and stops following the one tracked before. conn emits
  // 'state' {online} when its socket is attached or dropped and 'retry' {at, attempt} when it schedules
  // attempt number `attempt` (1, 2, …) of a reconnection: every attempt after the first means one failed.
  track(conn) {
    this.untrack();
    const onState = (ev) => {
      if (ev.detail.online) this.set('connected');
      else this.set('reconnecting');
    };
    const onRetry = (ev) => {
      const failed = Math.max(0, ev.detail.attempt - 1);
      this.set(failed >= OFFLINE_AFTER ? 'offline' : 'reconnecting', { nextAt: ev.detail.at, failed });
    };
    conn.addEventListener('state', onState);
    conn.addEventListener('retry', onRetry);
    this.untrack = () => {
      conn.removeEventListener('state', onState);
      conn.removeEventListener('retry', onRetry);
    };
    this.set(conn.online ? 'connected' : 'connecting');
  }
}

// view says what the page shows for state s at time now (ms): the header's i18n key and its values (n: whole
// seconds to the next attempt, 0 while one is under way), what the composer tells the user about what they
// type (null when connected), and whether a message typed now is queued rather than sent.
export function view(s, now) {
  const n = s.nextAt > now ? Math.ceil((s.nextAt - now) / 1000) : 0;
  switch (s.phase) {
    case 'connected':
      return { key: 'conn_connected', vars: {}, composer: null, queued: false };
    case 'connecting':
      return { key: 'conn_connecting', vars: {}, composer: 'composer_connecting', queued: true };
    case 'reconnecting':
      return { key: n ? 'conn_reconnecting_in' : 'conn_reconnecting', vars: { n }, composer: 'composer_reconnecting', queued: true };
    default:
      return { key: n ? 'conn_offline_in' : 'conn_offline', vars: { n }, composer: 'composer_offline', queued: true };
  }
}

// connState is the page's one instance.
export const connState = new ConnState();
