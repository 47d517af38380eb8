// Module seat keeps this tab's seat in an anonymous room in sessionStorage, so that a reload (Tor Browser's
// "New Tor circuit for this site" reloads too) takes the same seat back instead of meeting "room is full".
//
// What is kept, for the life of the tab only (sessionStorage dies with it): the room id, the invite's capability
// and secret, the relay's resume token and the seq of the last entry the page processed, the tab's member id,
// its Ed25519 identity seed (so peers see the same identity come back, not a key change), the key type, the
// conversation's timer, and whether it ever held an epoch. Never an epoch key, a chain or a message: those die
// with the page (docs/e2e.md §13). Burn, leave and the room's end drop it.

const KEY = 'cleanrelay.seat';
const FIELDS = { room: 'string', cap: 'string', secret: 'string', resume: 'string', seed: 'string', member: 'number', last: 'number', max: 'number' };

function store() {
  try {
    return globalThis.sessionStorage ?? null;
  } catch {
    return null; // storage refused: a reload then starts afresh
  }
}

// loadSeat returns the kept seat, or null when there is none or it does not read as one.
export function loadSeat() {
  let s = null;
  try {
    s = JSON.parse(store()?.getItem(KEY) ?? 'null');
  } catch {
    s = null;
  }
  if (!s || typeof s !== 'object') return null;
  for (const [k, type] of Object.entries(FIELDS)) if (typeof s[k] !== type) return null;
  return s;
}

export function saveSeat(seat) {
  try {
    store()?.setItem(KEY, JSON.stringify(seat));
  } catch {
    /* storage full or refused: the seat is not kept */
  }
}

// updateSeat merges fields into the kept seat, if there is one.
export function updateSeat(fields) {
  const s = loadSeat();
  if (s) saveSeat({ ...s, ...fields });
}

export function dropSeat() {
  try {
    store()?.removeItem(KEY);
  } catch {
    /* nothing kept */
  }
}
