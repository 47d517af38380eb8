// Module app is the page: it checks the browser, then drives the screens of an anonymous room.
import { CryptoClient } from './cryptoclient.mjs';
import { Room, stats, FILE_CAP, newId } from './room.mjs';
import { parseInvite, inviteFragment, b64u } from './proto.mjs';
import { t, setLang, getLang, initialLang, errorText, fmt } from './i18n.mjs';
import { $, h, tx, fx, show, field } from './ui.mjs';
import { accountsCard, resumeAccounts, noteDialog, passphraseProblem } from './accounts.mjs';
import { verifyDialog } from './verify.mjs';
import { connState } from './connstate.mjs';
import { connBanner } from './banner.mjs';
import { loadSeat, saveSeat, updateSeat, dropSeat } from './seat.mjs';
import { expire } from './expiry.mjs';
import { stateSpan, showState } from './msgstate.mjs';
import { unread } from './mailbox.mjs';

// refusal returns the reasons this browser cannot run the client, as i18n keys.
function refusal() {
  const r = [];
  if (!globalThis.isSecureContext) r.push('refuse_secure');
  if (!globalThis.crypto?.subtle) r.push('refuse_subtle');
  if (typeof Worker !== 'function') r.push('refuse_worker');
  return r;
}

let cryptoClient = null;

// env is what the account screens need from this module.
const env = {
  crypto: () => cryptoClient,
  caps: () => caps,
  problem: (m) => problem(m),
  enterDialog: (d) => enterDialog(d),
  wsURL: () => wsURL(),
};
let room = null;
let caps = { curve25519: false };
// verified holds the fingerprints the user marked as verified in this room: a changed key has another
// fingerprint, so a key change clears the mark. A dialog brings its own, kept with the account's pins.
let verified = new Set();

const TIMERS = [10, 60, 300, 3600];
const COPIED_FOR = 2000;

// wsURL is the relay's WebSocket. An anonymous room's socket says so (docs/accounts.md §7): the relay then
// ignores the account cookies this browser may hold, so the room learns no account.
function wsURL({ anonymous = false } = {}) {
  return `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws${anonymous ? '?anonymous=1' : ''}`;
}

function keyTypeField(id) {
  const type = h('select', { id },
    h('option', { value: 'rsa', i18n: 'key_rsa' }),
    caps.curve25519 ? h('option', { value: 'curve25519', i18n: 'key_curve' }) : null);
  return [type, field('key_type', type)];
}

function homeScreen() {
  const [type, typeField] = keyTypeField('keytype');
  const max = h('select', { id: 'maxmembers' }, ...[2, 3, 4, 5, 6, 7, 8].map((n) => h('option', { value: String(n) }, String(n))));
  const go = h('button.primary', { id: 'create', type: 'submit', i18n: 'create_room', autofocus: true });
  const form = h('form.card', {
    onsubmit: (ev) => {
      ev.preventDefault();
      startRoom({ create: true, type: type.value, max: Number(max.value) });
    },
  },
  h('h2', { i18n: 'anon_title' }),
  h('p', { i18n: 'anon_text' }),
  typeField,
  field('max_members', max),
  h('div.row', {}, go));
  return h('section', { id: 'home' }, form, accountsCard(env));
}

function joinScreen(invite) {
  const [type, typeField] = keyTypeField('keytype');
  return h('section', { id: 'joinscreen' }, h('form.card', {
    onsubmit: (ev) => {
      ev.preventDefault();
      startRoom({ create: false, invite, type: type.value });
    },
  },
  h('h2', { i18n: 'join_title' }),
  h('p', { i18n: 'anon_text' }),
  typeField,
  h('div.row', {}, h('button.primary', { id: 'join', type: 'submit', i18n: 'join_room', autofocus: true }))));
}

function busyScreen(key) {
  return h('section.card', { id: 'busy', 'aria-live': 'polite' }, h('p', {}, h('progress', {}), ' ', tx(key)));
}

// problem shows an error (an Error, a relay error with a code, or a sentence): in the room's log while a
// room shows, else at the top of the screen, focused so a screen reader reads it at once.
function problem(e) {
  const message = typeof e === 'string' ? e : errorText(e);
  const log = $('#log');
  const line = h('p.problem', { role: 'alert', tabindex: '-1' }, h('strong', {}, tx('problem'), ': '), message);
  if (e?.detail) line.title = e.detail; // the technical cause, for whoever reports a bug; never the sentence
  if (log) {
    log.append(line);
    log.scrollTop = log.scrollHeight;
  } else {
    $('#main').prepend(line);
    line.focus();
  }
}

// leaveInvite takes a dead or broken invite out of the address bar, so a reload starts afresh.
function leaveInvite() {
  if (location.hash) history.replaceState(null, '', location.pathname);
}

async function startRoom({ create, invite, type, max }) {
  let info = null;
  const makeKey = async () => {
    show(busyScreen('making_key'));
    info = await cryptoClient.call('generate', { type, name: 'anonymous' });
  };
  try {
    verified = new Set();
    room = new Room({ crypto: cryptoClient, wsURL: wsURL({ anonymous: true }) });
    room.seed = b64u(crypto.getRandomValues(new Uint8Array(32)));
    wireRoom(room);
    if (create) {
      await makeKey();
      show(busyScreen('connecting'));
      // The invite stays out of this tab's address bar: a reload would try to join as a new member.
      await room.create({ max });
    } else {
      // The relay checks the invite first: a dead room or a wrong link is told before any key is made.
      show(busyScreen('checking_invite'));
      await room.join(invite, makeKey);
    }
    keepSeat(room, { type, creator: create });
    show(roomScreen(info, create));
    system('online');
    updateInvite();
  } catch (e) {
    const r = room;
    room = null;
    await r?.destroy();
    if (!create) leaveInvite();
    show(homeScreen());
    problem(e);
  }
}

// keepSeat keeps the seat of anonymous room r for a reload (seat.mjs), and follows what the seat needs.
function keepSeat(r, { type, creator }) {
  saveSeat({ room: r.conn.room, cap: r.invite.cap, secret: r.invite.secret, resume: r.conn.resumeToken, seed: r.seed,
    member: r.member, last: r.conn.done, max: r.max, type, creator, hadEpoch: false, timer: r.timer.saved() });
  r.addEventListener('processed', (ev) => updateSeat({ last: ev.detail.seq }));
  r.addEventListener('epoch', () => updateSeat({ hadEpoch: true }));
  r.addEventListener('timer', () => updateSeat({ timer: r.timer.saved() }));
}

// resumeSeat takes back this tab's seat after a reload, or shows why it could not.
async function resumeSeat(seat) {
  let info = null;
  try {
    verified = new Set();
    room = new Room({ crypto: cryptoClient, wsURL: wsURL({ anonymous: true }) });
    wireRoom(room);
    show(busyScreen('connecting'));
    await room.resume(seat, async () => {
      show(busyScreen('making_key'));
      info = await cryptoClient.call('generate', { type: seat.type === 'curve25519' ? 'curve25519' : 'rsa', name: 'anonymous' });
    });
    room.seed = seat.seed;
    keepSeat(room, seat);
    updateSeat({ last: room.conn.done, hadEpoch: seat.hadEpoch });
    show(roomScreen(info, seat.creator === true));
    system('reload_resumed');
    if (room.timer.ttl) system('timer_on', { d: fmt('dur', room.timer.ttl), who: whoIs(room.timer.from) });
    setReady();
  } catch (e) {
    const r = room;
    room = null;
    await r?.destroy();
    // The relay no longer has the seat (or the room): forget it. A relay that cannot be reached keeps it.
    if (e.code !== 'connect' && e.code !== 'dropped') dropSeat();
    show(homeScreen());
    problem(e);
  }
}

// enterDialog joins an accounts dialog (or takes this tab's place back after a reload).
async function enterDialog(d) {
  show(busyScreen('connecting'));
  room = new Room({ crypto: cryptoClient, wsURL: wsURL(), dialog: { peerName: d.peerName, peerArmored: d.peerArmored, peerFp: d.peerFp, outbox: d.outbox, beforeOpen: d.beforeOpen } });
  room.back = d.back;
  room.onPeerKey = d.onPeerKey;
  room.peerName = d.peerName;
  verified = d.verified;
  wireRoom(room);
  const savedKey = `cleanrelay.resume.${d.room}`;
  let saved = null;
  try {
    saved = JSON.parse(sessionStorage.getItem(savedKey));
  } catch {
    saved = null;
  }
  try {
    await room.joinDialog(d.room, d.cap, saved);
    connState.track(room.conn); // joining may have replaced the connection
  } catch (e) {
    room = null;
    d.back();
    problem(e);
    return;
  }
  // Keep the place across a reload: the relay lets a member resume within its grace.
  const r = room;
  // hadEpoch: a reload then comes back as a restarted member (docs/e2e.md §13); no key is ever kept.
  let hadEpoch = saved?.hadEpoch === true && r.conn.resumeToken === saved?.resume;
  // spent: hashes of the key packages this page's accepted commits used (public values, no key), so that a
  // reloaded page handed one again does not commit from nothing on it (docs/e2e.md §13).
  // last is the last entry processed (conn.done), not the last received: a reload asks the relay for everything
  // after it, so what was queued unprocessed when the page went is replayed, not lost.
  const save = () => sessionStorage.setItem(savedKey, JSON.stringify({ resume: r.conn.resumeToken, last: r.conn.done, hadEpoch, spent: r.spent ?? [] }));
  save();
  r.addEventListener('processed', save);
  r.addEventListener('epoch', () => {
    hadEpoch = true;
    save();
  });
  show(roomScreen(d.own, false));
  system('online');
  showOutbox(r);
  // The peer's key may have been set while joining, before this screen existed.
  setReady();
}

// showOutbox shows what this page sent in the dialog before (in an earlier room: a relay restart ends it),
// each with its state, and Retry on what failed.
function showOutbox(r) {
  for (const e of r.outbox.items.values()) {
    if (e.kind === 'msg') renderMessage({ id: e.id, text: e.text, ts: e.ts, ttl: e.ttl, mine: true, verified: true });
    else $('#log')?.append(h('div.msg.mine.file', { dataset: { id: e.id } }, h('p', {}, tx('file_sent'), ` ${e.name} (`, fx('size', e.size), ')'), h('p.meta', {}, fx('time', e.ts))));
    showState($('#log'), e, retry);
  }
}

function retry(id) {
  room?.outbox.retry(id);
}

function system(key, vars) {
  const log = $('#log');
  if (!log) return;
  log.append(h('p.system', {}, tx(key, vars)));
  log.scrollTop = log.scrollHeight;
}

function inviteBox(link) {
  const copy = h('button', {
    type: 'button',
    id: 'copy',
    i18n: 'copy',
    onclick: async () => {
      $('#invitelink').select();
      try {
        await navigator.clipboard.writeText(link);
      } catch {
        return; // the selection is left for the user to copy
      }
      copy.dataset.i18n = 'copied';
      copy.textContent = t('copied');
      clearTimeout(copy.reset);
      copy.reset = setTimeout(() => {
        copy.dataset.i18n = 'copy';
        copy.textContent = t('copy');
      }, COPIED_FOR);
    },
  });
  return h('div.invite', { id: 'invite' },
    h('label', { for: 'invitelink', i18n: 'invite_label' }),
    h('div.row.nowrap', {}, h('input', { id: 'invitelink', readonly: true, value: link, autofocus: true }), copy));
}

// peerName is how the page names a peer: the user name in a dialog, "member N" in an anonymous room (as a
// phrase that i18n translates again on a language switch).
function peerName(p) {
  return room?.dialog ? room.peerName : { t: 'member_n', n: p.member };
}

function roomScreen(ownInfo, creator) {
  const link = creator ? `${location.origin}${location.pathname}${inviteFragment(room.invite)}` : null;
  const text = h('textarea', { id: 'text', rows: '2', 'data-i18n-ph': 'message_ph', placeholder: t('message_ph'), disabled: true });
  const timer = h('select', { id: 'ttl', disabled: true }, h('option', { value: '0', i18n: 'timer_off' }),
    ...[...new Set([...TIMERS, room.timer.ttl])].filter(Boolean).sort((a, b) => a - b).map((s) => h('option', { value: String(s), dataset: { fmt: 'dur', value: String(s) } }, fmt('dur', s))));
  timer.value = String(room.timer.ttl);
  // The timer is the conversation's: changing it tells every member (room.setTimer), it is not kept per message.
  timer.addEventListener('change', async () => {
    try {
      await room.setTimer(Number(timer.value));
    } catch (e) {
      timer.value = String(room.timer.ttl);
      problem(e);
    }
  });
  const banner = connBanner();
  const file = h('input', { id: 'file', type: 'file', disabled: true });
  const send = h('button.primary', { id: 'send', type: 'submit', i18n: 'send', disabled: true });
  const composer = h('form.composer', {
    id: 'composer',
    onsubmit: async (ev) => {
      ev.preventDefault();
      const v = text.value;
      if (!v.trim()) return;
      try {
        await room.sendText(v);
        text.value = '';
      } catch (e) {
        problem(e);
      }
    },
  },
  h('label.sr-only', { for: 'text', i18n: 'message_label' }),
  banner.note,
  h('div.sendrow', {}, text, send),
  h('div.row.options', {},
    h('label', { for: 'ttl', i18n: 'timer' }), timer,
    h('label.file', { for: 'file', i18n: 'attach' }), file));
  text.addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' && !ev.shiftKey) {
      ev.preventDefault();
      composer.requestSubmit();
    }
  });
  file.addEventListener('change', () => sendFile(file));
  const e2e = h('button.e2e', { id: 'e2e', type: 'button', i18n: 'e2e_label', onclick: () => keysDialog(ownInfo) });
  const verifyBtn = h('button', { id: 'verifybtn', type: 'button', i18n: 'verify', hidden: true, onclick: () => verifyPeer(ownInfo) });
  const mark = h('span.verified', { id: 'verified', hidden: true }, '✓ ', tx('verified'));
  const burn = h('button.danger', {
    id: 'burn',
    type: 'button',
    i18n: 'burn',
    onclick: async () => {
      if (!window.confirm(t('burn_confirm'))) return;
      try {
        await room.burn();
      } catch (e) {
        problem(e);
      }
    },
  });
  const back = room.dialog
    ? h('button', {
      type: 'button',
      id: 'back',
      i18n: 'back',
      onclick: async () => {
        const r = room;
        room = null;
        await r.leave();
        r.back();
      },
    })
    : null;
  const screen = h('section', { id: 'room', dataset: { own: ownInfo.fingerprint } },
    room.dialog ? h('h2', { id: 'dialogtitle' }, tx('dialog_with', { u: room.peerName })) : h('h2.sr-only', { i18n: 'anon_title' }),
    h('header.roombar', {}, back, e2e, mark, verifyBtn, banner.head, h('span', { id: 'status', role: 'status' }, tx('waiting_peer')), burn),
    creator ? inviteBox(link) : null,
    h('p.note', { i18n: room.dialog ? 'storage_note' : 'storage_note_anon' }),
    h('div.log', { id: 'log', role: 'log', label: 'log_label', tabindex: '0' }),
    room.dialog ? h('p.note.route', { id: 'routenote', 'aria-live': 'polite' }) : null,
    composer);
  screen.ownInfo = ownInfo;
  return screen;
}

async function sendFile(file) {
  const f = file.files[0];
  if (!f) return;
  if (f.size > FILE_CAP) {
    problem(t('too_big', { n: fmt('size', FILE_CAP) }));
    file.value = '';
    return;
  }
  const bar = h('progress', { max: '1', value: '0' });
  const id = newId();
  const item = h('div.msg.mine.file', { dataset: { id } }, h('p', {}, tx('sending'), ` ${f.name} `), bar, h('p.meta', {}, stateSpan()));
  $('#log').append(item);
  try {
    await room.sendFile(f, (p) => {
      bar.value = p;
    }, id);
    const e = room.outbox.items.get(id);
    const ttl = e?.ttl ?? 0;
    item.replaceChildren(h('p', {}, tx('file_sent'), ` ${f.name} (`, fx('size', f.size), ')'), h('p.meta', {}, fx('time', Date.now()), countdown(ttl)));
    if (e) showState($('#log'), e, retry);
    item.dataset.done = e?.state === 'failed' ? 'failed' : 'sent';
    if (ttl) expire(item, ttl);
  } catch (e) {
    item.dataset.done = 'failed';
    problem(e);
  }
  file.value = '';
}

function allVerified() {
  return room && room.peers.size > 0 && [...room.peers.values()].every((p) => verified.has(p.fingerprint));
}

// updateVerified shows the verified mark when every peer's current key was marked, and offers Verify.
function updateVerified() {
  const mark = $('#verified');
  if (!mark || !room) return;
  mark.hidden = !allVerified();
  const btn = $('#verifybtn');
  if (btn) btn.hidden = room.peers.size === 0;
}

// updateInvite hides the invite link while the room is full: nobody else can join with it then.
function updateInvite() {
  const box = $('#invite');
  if (!box || !room) return;
  box.hidden = room.present.size + 1 >= room.max;
}

function verifyPeer(ownInfo, member = null) {
  const peers = [...room.peers.values()];
  if (member === null && peers.length > 1) {
    keysDialog(ownInfo);
    return;
  }
  const p = member === null ? peers[0] : room.peers.get(member);
  if (!p) return;
  verifyDialog({
    who: peerName(p),
    peer: p,
    ownFp: ownInfo.fingerprint,
    verified: verified.has(p.fingerprint),
    onMark: (on) => {
      if (on) verified.add(p.fingerprint);
      else verified.delete(p.fingerprint);
      updateVerified();
    },
  });
}

function setReady() {
  if (!room) return;
  const ok = room.canSend();
  const text = $('#text');
  const wasOff = text?.disabled;
  for (const id of ['text', 'send', 'file', 'ttl']) {
    const el = $(`#${id}`);
    if (el) el.disabled = !ok;
  }
  const st = $('#status');
  if (st) {
    // The connection is the banner's (#conn); this says whether the conversation can start.
    st.replaceChildren(ok ? '' : tx('waiting_peer'));
    st.dataset.ready = ok ? 'yes' : 'no';
  }
  routeNote();
  updateVerified();
  updateInvite();
  // The message box just became usable: put the cursor there, unless the user is busy elsewhere.
  const at = document.activeElement;
  const idle = !at || at === document.body || at.matches('#room h2') || at.closest('#invite');
  if (ok && wasOff && idle && !document.querySelector('dialog[open]')) text.focus();
}

// routeNote says, under a dialog's log, where a message typed now goes: to the peer in the room, into the
// relay's mailbox (lost if the relay restarts), or nowhere until a changed key is accepted.
function routeNote() {
  const note = $('#routenote');
  if (!note || !room?.dialog) return;
  const key = room.blocked.size ? 'route_blocked' : room.viaFrames() ? '' : 'route_mailbox';
  note.dataset.route = key || 'room';
  note.replaceChildren(key ? tx(key, { u: room.peerName }) : '');
}

function renderMessage(m) {
  const log = $('#log');
  if (!log) return;
  if (!m.mine && document.hidden) unread.hiddenOne();
  const who = m.mine ? null : room?.dialog ? `${room.peerName} · ` : h('span', {}, tx('member_n', { n: m.from }), ' · ');
  const el = h(`div.msg.${m.mine ? 'mine' : 'theirs'}`, { dataset: { id: m.id } },
    h('p.text', {}, m.text),
    h('p.meta', {}, who, fx('time', m.ts || Date.now()), countdown(m.ttl), m.mine ? stateSpan() : null),
    m.verified ? null : h('p.bad', {}, tx('unverified')));
  if (!m.verified) el.classList.add('unverified');
  log.append(el);
  log.scrollTop = log.scrollHeight;
  if (m.ttl > 0) expire(el, m.ttl);
}

// countdown is the meta line's "disappears in 4:59" of a message or file with a timer (expiry.mjs ticks it).
function countdown(ttl) {
  return ttl > 0 ? h('span.ttl', {}, ' · ', tx('ttl_left'), ' ', h('span.countdown', {})) : null;
}

// whoIs names a member in a sentence: "you", the peer's name in a dialog, else "member N".
function whoIs(member) {
  if (member === room?.member) return { t: 'you' };
  return room?.dialog ? room.peerName : { t: 'member_n', n: member };
}

function endedKey(reason) {
  const known = ['burned', 'expired', 'shutdown', 'revoked', 'moved', 'timeout', 'gone'];
  return known.includes(reason) ? `ended_${reason}` : 'ended_other';
}

function wireRoom(r) {
  r.outbox.view = (e) => showState($('#log'), e, r.dialog || !r.ended ? retry : null);
  r.addEventListener('message', (ev) => renderMessage(ev.detail));
  r.addEventListener('peerkey', () => {
    setReady();
    r.onPeerKey?.(r);
  });
  r.addEventListener('mail', (ev) => unread.mail(ev.detail.from));
  r.addEventListener('dialog', (ev) => noteDialog(ev.detail.from));
  r.addEventListener('peer', (ev) => {
    if (r.dialog) system('peer_key_dir', { u: r.peerName, fp: ev.detail.fingerprint });
    else system('peer_key_ok', { n: ev.detail.member });
    setReady();
  });
  r.addEventListener('presence', (ev) => {
    const p = ev.detail;
    // A reloaded tab is replayed its own drop: it is told in the first person (a drop this page saw itself
    // was told by the connection's own lines); a dialog names its peer.
    if (p.member === r.member) {
      const own = { away: 'you_away', back: 'you_back' }[p.event];
      if (own && !r.conn.lostAt) system(own);
    } else if (r.dialog) {
      const key = { join: 'user_joined', leave: 'user_left', away: 'user_away', back: 'user_back' }[p.event];
      if (key) system(key, { u: r.peerName });
    } else {
      const key = { join: 'joined', leave: 'left', away: 'away', back: 'member_back' }[p.event];
      if (key) system(key, { n: p.member });
    }
    setReady();
  });
  r.addEventListener('timer', (ev) => {
    const sel = $('#ttl');
    const v = String(ev.detail.ttl);
    if (sel && ![...sel.options].some((o) => o.value === v)) sel.append(h('option', { value: v, dataset: { fmt: 'dur', value: v } }, fmt('dur', ev.detail.ttl)));
    if (sel) sel.value = v;
    const by = whoIs(ev.detail.from);
    if (ev.detail.ttl) system('timer_on', { d: fmt('dur', ev.detail.ttl), who: by });
    else system('timer_none', { who: by });
    $('#log')?.lastElementChild?.classList.add('timer');
  });
  r.addEventListener('reloadlost', (ev) => system('reload_lost', { who: whoIs(ev.detail.member) }));
  r.addEventListener('askedagain', (ev) => system('reload_asked', { who: whoIs(ev.detail.member), k: ev.detail.count }));
  r.addEventListener('resent', (ev) => system('reload_resent', { who: whoIs(ev.detail.member), k: ev.detail.sent, n: ev.detail.asked }));
  r.addEventListener('state', (ev) => {
    if (!$('#log')) return;
    if (!ev.detail.unblocked) system(ev.detail.online ? (ev.detail.resumed ? 'resumed' : 'online') : 'offline');
    setReady();
  });
  connState.track(r.conn);
  r.addEventListener('problem', (ev) => problem(ev.detail.forged ? t('forged') : ev.detail));
  r.addEventListener('keychange', (ev) => {
    verified.delete(ev.detail.peer.fingerprint);
    setReady();
    keyChangeDialog(ev.detail);
  });
  r.addEventListener('filestart', (ev) => {
    const f = ev.detail;
    const bar = h('progress', { max: '1', value: '0', id: `fp-${f.id}` });
    $('#log')?.append(h('div.msg.theirs.file', { id: `f-${f.id}` }, h('p', {}, tx('receiving'), ` ${f.name} `), bar));
  });
  r.addEventListener('fileprogress', (ev) => {
    const bar = document.getElementById(`fp-${ev.detail.id}`);
    if (bar) bar.value = ev.detail.progress;
  });
  r.addEventListener('file', (ev) => {
    const f = ev.detail;
    const url = URL.createObjectURL(f.blob);
    const box = document.getElementById(`f-${f.id}`);
    const kids = [h('p', {}, tx('file_from'), ` ${f.name} (`, fx('size', f.size), ') ',
      h('a.save', { href: url, download: f.name, dataset: { size: String(f.size) } }, tx('save')))];
    // The CSP (connect-src) forbids fetch() of blob: URLs, so keep the Blob where a test can read it.
    kids[0].lastChild.cleanrelayBlob = f.blob;
    if (f.type.startsWith('image/') && !f.type.includes('svg')) kids.push(h('img.preview', { src: url, alt: f.name }));
    kids.push(h('p.meta', {}, fx('time', Date.now()), countdown(f.ttl)));
    if (!f.verified) kids.push(h('p.bad', {}, tx('unverified')));
    box?.replaceChildren(...kids);
    // A file under the conversation's timer goes from both sides, its blob: URL with it.
    if (box && f.ttl) expire(box, f.ttl, { onGone: () => URL.revokeObjectURL(url) });
  });
  r.addEventListener('ended', async (ev) => {
    if (!r.dialog) dropSeat();
    const key = endedKey(ev.detail.reason);
    await r.destroy();
    if (room === r) room = null;
    for (const d of document.querySelectorAll('dialog')) d.remove();
    if (r.dialog) {
      r.back();
      problem(t(key));
      return;
    }
    leaveInvite();
    show(h('section.card', { id: 'ended', dataset: { reason: ev.detail.reason || '' } },
      h('h2', { i18n: key === 'ended_burned' ? 'ended_burned' : 'ended_other' }),
      key === 'ended_burned' ? null : h('p', { i18n: key }),
      h('button.primary', { type: 'button', id: 'newroom', i18n: 'new_room', autofocus: true, onclick: () => show(homeScreen()) })));
  });
}

function dialog(id, ...kids) {
  $('#' + id)?.remove();
  const d = h('dialog', { id }, ...kids);
  document.body.append(d);
  d.showModal();
  return d;
}

function keyBlock(titleNode, info, verifyButton = null) {
  return h('div.key', {},
    h('h3', {}, titleNode),
    h('dl', {},
      h('dt', { i18n: 'algorithm' }), h('dd', {}, `${info.algorithm}${info.bits ? ` ${info.bits}` : ''}${info.curve ? ` (${info.curve})` : ''}`),
      h('dt', { i18n: 'created' }), h('dd', {}, fx('date', new Date(info.created).getTime())),
      h('dt', { i18n: 'fingerprint' }), h('dd.fp', {}, info.fingerprint),
      info.safety ? [h('dt', { i18n: 'safety' }), h('dd.safety', {}, info.safety)] : null),
    verifyButton,
    h('details', {}, h('summary', { i18n: 'armored' }), h('pre.armored', {}, info.armored)));
}

function keysDialog(ownInfo) {
  const pass = h('input', { type: 'password', id: 'exportpass', autocomplete: 'new-password' });
  const d = dialog('keys',
    h('h2', { i18n: 'keys_title' }),
    keyBlock(tx('your_key'), ownInfo),
    ...[...room.peers.values()].map((p) => keyBlock(room.dialog ? h('span', {}, room.peerName) : tx('peer_key', { n: p.member }), p,
      h('button.verifypeer', {
        type: 'button',
        i18n: 'verify',
        dataset: { member: String(p.member) },
        onclick: () => {
          d.close();
          verifyPeer(ownInfo, p.member);
        },
      }))),
    h('details.export', {},
      h('summary', { i18n: 'export_key' }),
      h('form', {
        novalidate: true,
        onsubmit: async (ev) => {
          ev.preventDefault();
          const why = passphraseProblem('exportpass');
          if (why) return;
          const zip = await cryptoClient.call('exportZip', { passphrase: pass.value });
          const blob = new Blob([zip], { type: 'application/zip' });
          const a = h('a', { id: 'exportlink', href: URL.createObjectURL(blob), download: `cleanrelay-key-${ownInfo.fingerprint.replace(/ /g, '').slice(-8)}.zip` }, 'ZIP');
          a.cleanrelayBlob = blob;
          $('#exportlink')?.remove();
          ev.target.append(a);
          a.click();
        },
      },
      field('export_pass', pass, { hint: 'passphrase_rule' }),
      h('button', { type: 'submit', id: 'exportdo', i18n: 'export_do' }))),
    h('div.row', {}, h('button', { type: 'button', id: 'keysclose', i18n: 'close', autofocus: true, onclick: () => d.close() })));
}

function keyChangeDialog(r) {
  const d = dialog('keychange',
    h('h2.bad', { i18n: 'keychange_title' }),
    h('p', {}, tx('keychange_text', { n: r.peer.member })),
    h('dl', {},
      h('dt', { i18n: 'old_fp' }), h('dd.fp', {}, r.peer.fingerprint),
      h('dt', { i18n: 'new_fp' }), h('dd.fp', { id: 'newfp' }, r.offered.fingerprint),
      h('dt', { i18n: 'safety' }), h('dd.safety', {}, r.offered.safety)),
    h('div.row', {},
      h('button.danger', { type: 'button', id: 'kcburn', i18n: 'burn', autofocus: true, onclick: () => room.burn().catch((e) => problem(e)) }),
      h('button', {
        type: 'button',
        id: 'kctrust',
        i18n: 'trust_new',
        onclick: async () => {
          await room.trust(r.peer.member);
          d.close();
          setReady();
        },
      })));
  // Escape must not dismiss the warning: the user has to decide.
  d.addEventListener('cancel', (ev) => ev.preventDefault());
}

function langButton() {
  const b = $('#lang');
  const label = () => {
    b.textContent = t('lang');
    b.lang = t('lang_code');
    b.title = t('lang_switch');
  };
  b.addEventListener('click', () => {
    setLang(getLang() === 'en' ? 'ru' : 'en');
    label();
  });
  label();
  b.hidden = false;
}

async function main() {
  setLang(initialLang());
  langButton();
  const reasons = refusal();
  if (reasons.length) {
    show(h('section.card.refuse', { id: 'refused' }, h('h2', { i18n: 'refuse_title' }), ...reasons.map((r) => h('p', { i18n: r }))));
    return;
  }
  cryptoClient = new CryptoClient();
  try {
    caps = await cryptoClient.call('caps');
  } catch {
    show(h('section.card.refuse', { id: 'refused' }, h('h2', { i18n: 'refuse_title' }), h('p', { i18n: 'refuse_crypto' })));
    return;
  }
  let invite = null;
  let broken = false;
  try {
    invite = parseInvite(location.hash);
    // an invite cut short: some of its parts are there, not all
    broken = !invite && /(^#|&)[rck]=/.test(location.hash);
  } catch {
    broken = true;
  }
  if (broken) {
    // A mistyped or cut invite: say so at the top, before anything else happens.
    leaveInvite();
    show(homeScreen());
    problem(t('invite_bad'));
  } else if (loadSeat()) await resumeSeat(loadSeat());
  else if (invite) show(joinScreen(invite));
  else if (!(await resumeAccounts(env))) show(homeScreen());
  // Tests read timings from here; it holds durations only, never content.
  globalThis.cleanrelayStats = stats;
  document.body.dataset.ready = 'yes';
}

window.addEventListener('pagehide', () => room?.destroy());
main();
