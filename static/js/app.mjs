// Module app is the page: it checks the browser, then drives the screens of an anonymous room.
import { CryptoClient } from './cryptoclient.mjs';
import { Room, stats, FILE_CAP } from './room.mjs';
import { parseInvite, inviteFragment } from './proto.mjs';
import { missing } from './policy.mjs';
import { t, setLang, getLang } from './i18n.mjs';
import { $, h, tx, show } from './ui.mjs';
import { accountsCard, resumeAccounts, noteDialog } from './accounts.mjs';

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

// wsURL is the relay's WebSocket. An anonymous room's socket says so (docs/accounts.md §7): the relay then
// ignores the account cookies this browser may hold, so the room learns no account.
function wsURL({ anonymous = false } = {}) {
  return `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws${anonymous ? '?anonymous=1' : ''}`;
}

function fmtTime(ts) {
  const d = new Date(ts);
  return `${String(d.getHours()).padStart(2, '0')}:${String(d.getMinutes()).padStart(2, '0')}`;
}

function homeScreen() {
  const type = h('select', { id: 'keytype' },
    h('option', { value: 'rsa', i18n: 'key_rsa' }),
    caps.curve25519 ? h('option', { value: 'curve25519', i18n: 'key_curve' }) : null);
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
  h('label', {}, tx('key_type'), ' ', type),
  h('label', {}, tx('max_members'), ' ', max),
  h('p', {}, go));
  return h('section', { id: 'home' }, accountsCard(env), form);
}

function joinScreen(invite) {
  const type = h('select', { id: 'keytype' },
    h('option', { value: 'rsa', i18n: 'key_rsa' }),
    caps.curve25519 ? h('option', { value: 'curve25519', i18n: 'key_curve' }) : null);
  return h('section', { id: 'joinscreen' }, h('form.card', {
    onsubmit: (ev) => {
      ev.preventDefault();
      startRoom({ create: false, invite, type: type.value });
    },
  },
  h('h2', { i18n: 'join_title' }),
  h('p', { i18n: 'anon_text' }),
  h('label', {}, tx('key_type'), ' ', type),
  h('p', {}, h('button.primary', { id: 'join', type: 'submit', i18n: 'join_room', autofocus: true }))));
}

function busyScreen(key) {
  return h('section.card', { id: 'busy', 'aria-live': 'polite' }, h('p', {}, h('progress', {}), ' ', tx(key)));
}

function problem(message) {
  const log = $('#log');
  const line = h('p.problem', { role: 'alert' }, h('strong', {}, tx('problem'), ': '), message);
  if (log) {
    log.append(line);
    log.scrollTop = log.scrollHeight;
  } else {
    $('#main').append(line);
  }
}

async function startRoom({ create, invite, type, max }) {
  try {
    show(busyScreen('making_key'));
    const info = await cryptoClient.call('generate', { type, name: 'anonymous' });
    show(busyScreen('connecting'));
    room = new Room({ crypto: cryptoClient, wsURL: wsURL({ anonymous: true }) });
    wireRoom(room);
    if (create) {
      // The invite stays out of this tab's address bar: a reload would try to join as a new member.
      await room.create({ max });
    } else {
      await room.join(invite);
    }
    show(roomScreen(info, create));
    system('online');
  } catch (e) {
    show(homeScreen());
    problem(e.message);
  }
}

// enterDialog joins an accounts dialog (or takes this tab's place back after a reload).
async function enterDialog(d) {
  show(busyScreen('connecting'));
  room = new Room({ crypto: cryptoClient, wsURL: wsURL(), dialog: { peerArmored: d.peerArmored, beforeOpen: d.beforeOpen } });
  room.back = d.back;
  room.peerName = d.peerName;
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
  } catch (e) {
    room = null;
    d.back();
    problem(e.message);
    return;
  }
  // Keep the place across a reload: the relay lets a member resume within its grace.
  const r = room;
  const save = () => sessionStorage.setItem(savedKey, JSON.stringify({ resume: r.conn.resumeToken, last: r.conn.last }));
  save();
  r.conn.addEventListener('frame', save);
  r.conn.addEventListener('presence', save);
  show(roomScreen(d.own, false));
  system('online');
  // The peer's key may have been set while joining, before this screen existed.
  setReady();
}

function system(key, vars) {
  const log = $('#log');
  if (!log) return;
  log.append(h('p.system', {}, tx(key, vars)));
  log.scrollTop = log.scrollHeight;
}

function roomScreen(ownInfo, creator) {
  const link = creator ? `${location.origin}${location.pathname}${inviteFragment(room.invite)}` : null;
  const invite = creator
    ? h('div.invite', { id: 'invite' },
      h('label', { for: 'invitelink', i18n: 'invite_label' }),
      h('div.row', {},
        h('input', { id: 'invitelink', readonly: true, value: link }),
        h('button', {
          type: 'button',
          i18n: 'copy',
          onclick: async (ev) => {
            $('#invitelink').select();
            try {
              await navigator.clipboard.writeText(link);
              ev.target.textContent = t('copied');
            } catch {
              /* selection is left for the user to copy */
            }
          },
        })))
    : null;
  const text = h('textarea', { id: 'text', rows: '2', 'data-i18n-ph': 'message_ph', placeholder: t('message_ph'), disabled: true });
  const timer = h('select', { id: 'ttl' }, h('option', { value: '0', i18n: 'timer_off' }),
    ...[10, 60, 300, 3600].map((s) => h('option', { value: String(s) }, s < 60 ? `${s} s` : `${s / 60} min`)));
  const file = h('input', { id: 'file', type: 'file', disabled: true });
  const send = h('button.primary', { id: 'send', type: 'submit', i18n: 'send', disabled: true });
  const composer = h('form.composer', {
    id: 'composer',
    onsubmit: async (ev) => {
      ev.preventDefault();
      const v = text.value;
      if (!v.trim()) return;
      try {
        await room.sendText(v, Number(timer.value));
        text.value = '';
      } catch (e) {
        problem(e.message);
      }
    },
  }, text, h('div.row', {}, h('label', {}, tx('timer'), ' ', timer), h('label.file', {}, tx('attach'), ' ', file), send));
  text.addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' && !ev.shiftKey) {
      ev.preventDefault();
      composer.requestSubmit();
    }
  });
  file.addEventListener('change', async () => {
    const f = file.files[0];
    if (!f) return;
    if (f.size > FILE_CAP) {
      problem(t('too_big', { n: FILE_CAP / 1048576 }));
      file.value = '';
      return;
    }
    const bar = h('progress', { max: '1', value: '0' });
    const item = h('div.msg.mine.file', {}, h('span', {}, tx('sending'), ` ${f.name} `), bar);
    $('#log').append(item);
    try {
      await room.sendFile(f, (p) => {
        bar.value = p;
      });
      item.dataset.done = 'sent';
    } catch (e) {
      problem(e.message);
    }
    file.value = '';
  });
  const e2e = h('button.e2e', { id: 'e2e', type: 'button', i18n: 'e2e_label', onclick: () => keysDialog(ownInfo) });
  const burn = h('button.danger', {
    id: 'burn',
    type: 'button',
    i18n: 'burn',
    onclick: async () => {
      if (!window.confirm(t('burn_confirm'))) return;
      try {
        await room.burn();
      } catch (e) {
        problem(e.message);
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
  return h('section', { id: 'room' },
    room.dialog ? h('h2', { id: 'dialogtitle' }, tx('dialog_with', { u: room.peerName })) : null,
    h('header.roombar', {}, back, e2e, h('span', { id: 'status', role: 'status' }, tx('waiting_peer')), burn),
    invite,
    h('p.note', { i18n: 'storage_note' }),
    h('div.log', { id: 'log', 'aria-live': 'polite' }),
    composer);
}

function setReady() {
  const ok = room.canSend();
  for (const id of ['text', 'send', 'file']) {
    const el = $(`#${id}`);
    if (el) el.disabled = !ok;
  }
  const st = $('#status');
  if (st) {
    st.replaceChildren(ok ? tx('online') : tx('waiting_peer'));
    st.dataset.ready = ok ? 'yes' : 'no';
  }
}

function renderMessage(m) {
  const log = $('#log');
  if (!log) return;
  const el = h(`div.msg.${m.mine ? 'mine' : 'theirs'}`, { dataset: { id: m.id } },
    h('p.text', {}, m.text),
    h('p.meta', {}, m.mine ? '' : room?.dialog ? `${room.peerName} · ` : `#${m.from} · `, fmtTime(m.ts || Date.now()), m.ttl ? ` · ⏱ ${m.ttl} s` : ''),
    m.verified ? null : h('p.bad', {}, tx('unverified')));
  if (!m.verified) el.classList.add('unverified');
  log.append(el);
  log.scrollTop = log.scrollHeight;
  if (m.ttl > 0) setTimeout(() => el.remove(), m.ttl * 1000);
}

function wireRoom(r) {
  r.addEventListener('message', (ev) => renderMessage(ev.detail));
  r.addEventListener('dialog', (ev) => noteDialog(ev.detail.from));
  r.addEventListener('peer', (ev) => {
    if (r.dialog) system('peer_key_dir', { u: r.peerName, fp: ev.detail.fingerprint });
    else system('peer_key_ok', { n: ev.detail.member });
    setReady();
  });
  r.addEventListener('presence', (ev) => {
    const p = ev.detail;
    const key = { join: 'joined', leave: 'left', away: 'away', back: 'back' }[p.event];
    if (key) system(key, { n: p.member });
    setReady();
  });
  r.addEventListener('state', (ev) => {
    if (!$('#log')) return;
    system(ev.detail.online ? (ev.detail.resumed ? 'resumed' : 'online') : 'offline');
  });
  r.addEventListener('problem', (ev) => problem(ev.detail.forged ? t('forged') : ev.detail.message));
  r.addEventListener('keychange', (ev) => {
    setReady();
    keyChangeDialog(ev.detail);
  });
  r.addEventListener('filestart', (ev) => {
    const f = ev.detail;
    const bar = h('progress', { max: '1', value: '0', id: `fp-${f.id}` });
    $('#log')?.append(h('div.msg.theirs.file', { id: `f-${f.id}` }, h('span', {}, tx('receiving'), ` ${f.name} `), bar));
  });
  r.addEventListener('fileprogress', (ev) => {
    const bar = document.getElementById(`fp-${ev.detail.id}`);
    if (bar) bar.value = ev.detail.progress;
  });
  r.addEventListener('file', (ev) => {
    const f = ev.detail;
    const url = URL.createObjectURL(f.blob);
    const box = document.getElementById(`f-${f.id}`);
    const kids = [h('span', {}, tx('file_from'), ` ${f.name} (${f.size} B) `),
      h('a.save', { href: url, download: f.name, dataset: { size: String(f.size) } }, tx('save'))];
    // The CSP (connect-src) forbids fetch() of blob: URLs, so keep the Blob where a test can read it.
    kids[1].cleanrelayBlob = f.blob;
    if (f.type.startsWith('image/') && !f.type.includes('svg')) kids.push(h('img.preview', { src: url, alt: f.name }));
    if (!f.verified) kids.push(h('p.bad', {}, tx('unverified')));
    box?.replaceChildren(...kids);
  });
  r.addEventListener('ended', async (ev) => {
    const reason = ev.detail.reason;
    await r.destroy();
    room = null;
    if (r.dialog) {
      r.back();
      problem(t(reason === 'burned' ? 'ended_burned' : 'ended_other'));
      return;
    }
    history.replaceState(null, '', location.pathname);
    show(h('section.card', { id: 'ended' },
      h('p', { i18n: reason === 'burned' ? 'ended_burned' : 'ended_other' }),
      h('button.primary', { type: 'button', i18n: 'new_room', autofocus: true, onclick: () => show(homeScreen()) })));
  });
}

function dialog(id, ...kids) {
  $('#' + id)?.remove();
  const d = h('dialog', { id }, ...kids);
  document.body.append(d);
  d.showModal();
  return d;
}

function keyBlock(titleNode, info) {
  return h('div.key', {},
    h('h3', {}, titleNode),
    h('dl', {},
      h('dt', { i18n: 'algorithm' }), h('dd', {}, `${info.algorithm}${info.bits ? ` ${info.bits}` : ''}${info.curve ? ` (${info.curve})` : ''}`),
      h('dt', { i18n: 'created' }), h('dd', {}, new Date(info.created).toLocaleString()),
      h('dt', { i18n: 'fingerprint' }), h('dd.fp', {}, info.fingerprint),
      info.safety ? [h('dt', { i18n: 'safety' }), h('dd.safety', {}, info.safety)] : null),
    h('details', {}, h('summary', { i18n: 'armored' }), h('pre.armored', {}, info.armored)));
}

function keysDialog(ownInfo) {
  const pass = h('input', { type: 'password', id: 'exportpass', autocomplete: 'new-password' });
  const why = h('p.bad', { id: 'exportwhy' });
  const d = dialog('keys',
    h('h2', { i18n: 'keys_title' }),
    keyBlock(tx('your_key'), ownInfo),
    ...[...room.peers.values()].map((p) => keyBlock(room.dialog ? h('span', {}, room.peerName) : tx('peer_key', { n: p.member }), p)),
    h('form.export', {
      onsubmit: async (ev) => {
        ev.preventDefault();
        const miss = missing(pass.value);
        if (miss.length) {
          why.textContent = t('missing_prefix') + miss.map((m) => t(`missing_${m}`)).join(', ');
          return;
        }
        why.textContent = '';
        const zip = await cryptoClient.call('exportZip', { passphrase: pass.value });
        const blob = new Blob([zip], { type: 'application/zip' });
        const a = h('a', { id: 'exportlink', href: URL.createObjectURL(blob), download: `cleanrelay-key-${ownInfo.fingerprint.replace(/ /g, '').slice(-8)}.zip` }, 'ZIP');
        a.cleanrelayBlob = blob;
        $('#exportlink')?.remove();
        ev.target.append(a);
        a.click();
      },
    },
    h('h3', { i18n: 'export_key' }),
    h('label', {}, tx('export_pass'), ' ', pass),
    h('button', { type: 'submit', id: 'exportdo', i18n: 'export_do' }),
    why),
    h('p', {}, h('button', { type: 'button', id: 'keysclose', i18n: 'close', autofocus: true, onclick: () => d.close() })));
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
      h('button.danger', { type: 'button', id: 'kcburn', i18n: 'burn', autofocus: true, onclick: () => room.burn().catch((e) => problem(e.message)) }),
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

async function main() {
  const saved = (navigator.language || 'en').startsWith('ru') ? 'ru' : 'en';
  setLang(saved);
  $('#lang').addEventListener('click', () => setLang(getLang() === 'en' ? 'ru' : 'en'));
  $('#lang').hidden = false;
  const reasons = refusal();
  if (reasons.length) {
    show(h('section.card.refuse', { id: 'refused' }, h('h2', { i18n: 'refuse_title' }), ...reasons.map((r) => h('p', { i18n: r }))));
    return;
  }
  cryptoClient = new CryptoClient();
  try {
    caps = await cryptoClient.call('caps');
  } catch (e) {
    show(h('section.card.refuse', { id: 'refused' }, h('h2', { i18n: 'refuse_title' }), h('p', {}, e.message)));
    return;
  }
  let invite = null;
  try {
    invite = parseInvite(location.hash);
  } catch (e) {
    show(homeScreen());
    problem(e.message);
    return;
  }
  if (invite) show(joinScreen(invite));
  else if (!(await resumeAccounts(env))) show(homeScreen());
  // Tests read timings from here; it holds durations only, never content.
  globalThis.cleanrelayStats = stats;
  document.body.dataset.ready = 'yes';
}

window.addEventListener('pagehide', () => room?.destroy());
main();
