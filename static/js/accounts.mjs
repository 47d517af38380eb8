// Module accounts drives the account screens: register, log in, key setup or unlock, search,
// and opening a dialog (docs/accounts.md). The chat itself is the room screen of app.mjs.
import * as api from './api.mjs';
import { missing } from './policy.mjs';
import { t } from './i18n.mjs';
import { $, h, tx, show } from './ui.mjs';
import { DialogWatch } from './notify.mjs';
import { TicketKeeper } from './ticket.mjs';

// env is given by app.mjs: {crypto, caps, problem, home, enterDialog, wsURL}.
let env = null;
let me = null; // {user, key}: the logged-in user and its published key
let own = null; // this tab's unlocked key details
let watch = null; // the main screen's DialogWatch, while it shows

const store = {
  keyName: (u) => `cleanrelay.key.${u}`,
  pinsName: (u) => `cleanrelay.pins.${u}`,
  dialogsName: (u) => `cleanrelay.dialogs.${u}`,
  get(name, fallback) {
    try {
      return JSON.parse(localStorage.getItem(name)) ?? fallback;
    } catch {
      return fallback;
    }
  },
  set(name, v) {
    localStorage.setItem(name, JSON.stringify(v));
  },
};

function field(id, key, props = {}) {
  return h('label.field', {}, tx(key), h('input', { id, name: id, ...props }));
}

// secretField is a masked input with a show/hide toggle.
function secretField(id, key, autocomplete) {
  const input = h('input', { id, name: id, type: 'password', autocomplete, required: true });
  const toggle = h('button.toggle', {
    type: 'button',
    id: `${id}-toggle`,
    i18n: 'show',
    'aria-pressed': 'false',
    onclick: () => {
      const shown = input.type === 'text';
      input.type = shown ? 'password' : 'text';
      toggle.textContent = t(shown ? 'show' : 'hide');
      toggle.dataset.i18n = shown ? 'show' : 'hide';
      toggle.setAttribute('aria-pressed', String(!shown));
    },
  });
  return h('label.field', {}, tx(key), h('span.row', {}, input, toggle));
}

function policyMessage(p) {
  const miss = missing(p);
  return miss.length ? t('missing_prefix') + miss.map((m) => t(`missing_${m}`)).join(', ') : '';
}

function errorLine() {
  return h('p.bad', { role: 'alert', id: 'formerror' });
}

export function accountsCard(e) {
  env = e;
  return h('div.card', { id: 'accounts' },
    h('h2', { i18n: 'accounts_title' }),
    h('p', { i18n: 'accounts_intro' }),
    h('div.row', {},
      h('button.primary', { id: 'tologin', type: 'button', i18n: 'login', onclick: () => show(loginScreen()) }),
      h('button', { id: 'toregister', type: 'button', i18n: 'register', onclick: () => show(registerScreen()) })));
}

// resumeAccounts continues a login that is still valid (a reload): it asks for the passphrase again.
// The session cookie is HttpOnly; this flag only says whether asking /api/me is worth it, so
// an anonymous visitor makes no account request at all.
const LOGGED_IN = 'cleanrelay.loggedin';

export async function resumeAccounts(e) {
  env = e;
  if (!localStorage.getItem(LOGGED_IN)) return false;
  try {
    await afterLogin(await api.me());
    return true;
  } catch {
    localStorage.removeItem(LOGGED_IN);
    return false;
  }
}

function registerScreen() {
  const err = errorLine();
  return h('section', { id: 'registerscreen' }, h('form.card', {
    method: 'post',
    onsubmit: async (ev) => {
      ev.preventDefault();
      const f = ev.target.elements;
      const why = policyMessage(f.regpass.value);
      if (why) {
        err.textContent = why;
        return;
      }
      try {
        const r = await api.register({ username: f.regname.value, full_name: f.fullname.value, email: f.email.value, password: f.regpass.value });
        show(loginScreen(r.user.username, 'registered'));
      } catch (e) {
        err.textContent = e.message;
      }
    },
  },
  h('h2', { i18n: 'register' }),
  field('regname', 'username', { autocomplete: 'username', required: true, autofocus: true }),
  field('fullname', 'full_name', { autocomplete: 'name', required: true }),
  field('email', 'email', { type: 'email', autocomplete: 'email' }),
  secretField('regpass', 'password', 'new-password'),
  h('p.note', { i18n: 'password_rule' }),
  err,
  h('div.row', {},
    h('button.primary', { type: 'submit', id: 'registerdo', i18n: 'register' }),
    h('button', { type: 'button', i18n: 'login', onclick: () => show(loginScreen()) }))));
}

function loginScreen(username = '', note = null) {
  const err = errorLine();
  return h('section', { id: 'loginscreen' }, h('form.card', {
    method: 'post',
    onsubmit: async (ev) => {
      ev.preventDefault();
      const f = ev.target.elements;
      try {
        await api.login(f.loginname.value, f.loginpass.value);
        localStorage.setItem(LOGGED_IN, '1');
        await afterLogin(await api.me());
      } catch (e) {
        err.textContent = e.code === 'bad_credentials' ? t('bad_credentials') : e.message;
      }
    },
  },
  h('h2', { i18n: 'login' }),
  note ? h('p.ok', { i18n: note }) : null,
  field('loginname', 'username', { autocomplete: 'username', required: true, value: username, autofocus: !username }),
  secretField('loginpass', 'password', 'current-password'),
  err,
  h('div.row', {},
    h('button.primary', { type: 'submit', id: 'logindo', i18n: 'login' }),
    h('button', { type: 'button', i18n: 'register', onclick: () => show(registerScreen()) }))));
}

async function afterLogin(m) {
  me = m;
  const stored = store.get(store.keyName(me.user.username), null);
  show(stored ? unlockScreen(stored) : keySetupScreen());
}

function unlockScreen(stored) {
  const err = errorLine();
  return h('section', { id: 'unlockscreen' }, h('form.card', {
    onsubmit: async (ev) => {
      ev.preventDefault();
      try {
        own = await env.crypto().call('unlock', { armored: stored, passphrase: ev.target.elements.unlockpass.value });
        await ensurePublished();
        show(mainScreen());
      } catch (e) {
        err.textContent = /wrong passphrase/.test(e.message) ? t('wrong_passphrase') : e.message;
      }
    },
  },
  h('h2', { i18n: 'unlock_title' }),
  h('p', {}, tx('logged_in_as', { u: me.user.username })),
  secretField('unlockpass', 'passphrase', 'current-password'),
  err,
  h('div.row', {},
    h('button.primary', { type: 'submit', id: 'unlockdo', i18n: 'unlock' }),
    h('button.danger', {
      type: 'button',
      id: 'forgot',
      i18n: 'forgot',
      onclick: () => {
        if (window.confirm(t('forgot_warning'))) show(keySetupScreen());
      },
    }))));
}

// ensurePublished publishes this tab's key when the directory holds another one (or none),
// with the proof of possession the directory asks for.
async function ensurePublished() {
  if (me.key && me.key.fingerprint === own.fingerprint.replace(/ /g, '')) return;
  const c = await api.keyChallenge();
  const signature = await env.crypto().call('sign', { text: c.challenge });
  const r = await api.publishKey(own.armored, c.challenge, signature);
  tickets.forget(); // the relay ends the sessions of a replaced key; their ticket went with them
  me.key = r.key;
}

async function keep(passphrase) {
  store.set(store.keyName(me.user.username), await env.crypto().call('lock', { passphrase }));
}

function keySetupScreen() {
  stopWatch(); // a new key ends this user's sessions; the main screen starts a new watch
  const err = errorLine();
  const caps = env.caps();
  const type = h('select', { id: 'acctkeytype' },
    h('option', { value: 'rsa', i18n: 'key_rsa' }),
    caps.curve25519 ? h('option', { value: 'curve25519', i18n: 'key_curve' }) : null);
  const progress = h('p', { id: 'keyprogress', hidden: true }, h('progress'), ' ', tx('making_key'));
  const gen = h('form.card', {
    onsubmit: async (ev) => {
      ev.preventDefault();
      const pass = ev.target.elements.newpass.value;
      const why = policyMessage(pass);
      if (why) {
        err.textContent = why;
        return;
      }
      progress.hidden = false;
      try {
        own = await env.crypto().call('generate', { type: type.value, name: me.user.username, email: me.user.email || undefined });
        await keep(pass);
        await ensurePublished();
        show(keyReadyScreen());
      } catch (e) {
        progress.hidden = true;
        err.textContent = e.message;
      }
    },
  },
  h('h2', { i18n: 'keysetup_title' }),
  h('p', { i18n: 'keysetup_text' }),
  h('label', {}, tx('key_type'), ' ', type),
  secretField('newpass', 'passphrase', 'new-password'),
  h('p.note', { i18n: 'password_rule' }),
  h('button.primary', { type: 'submit', id: 'generate', i18n: 'generate' }),
  progress,
  err);
  const ierr = h('p.bad', { role: 'alert', id: 'importerror' });
  const imp = h('form.card', {
    onsubmit: async (ev) => {
      ev.preventDefault();
      const f = ev.target.elements;
      const file = f.importfile.files[0];
      if (!file) return;
      try {
        own = await env.crypto().call('importZip', { bytes: new Uint8Array(await file.arrayBuffer()), passphrase: f.importpass.value });
        await keep(f.importpass.value);
        await ensurePublished();
        show(mainScreen());
      } catch (e) {
        ierr.textContent = /wrong passphrase/.test(e.message) ? t('wrong_passphrase') : e.message;
      }
    },
  },
  h('h2', { i18n: 'import_title' }),
  h('label.field', {}, tx('import_file'), h('input', { id: 'importfile', name: 'importfile', type: 'file', accept: '.zip,application/zip' })),
  secretField('importpass', 'passphrase', 'current-password'),
  h('button', { type: 'submit', id: 'importdo', i18n: 'import' }),
  ierr);
  return h('section', { id: 'keysetup' }, gen, imp);
}

async function exportLink(passphrase) {
  const zip = await env.crypto().call('exportZip', { passphrase });
  const blob = new Blob([zip], { type: 'application/zip' });
  const a = h('a.button', { id: 'exportlink', href: URL.createObjectURL(blob), download: `cleanrelay-${me.user.username}-key.zip` }, tx('download_zip'));
  // The CSP (connect-src) forbids fetch() of blob: URLs, so keep the Blob where a test can read it.
  a.cleanrelayBlob = blob;
  return a;
}

function exportForm() {
  const err = h('p.bad', { id: 'exportwhy' });
  return h('form.export', {
    onsubmit: async (ev) => {
      ev.preventDefault();
      const why = policyMessage(ev.target.elements.exportpass.value);
      if (why) {
        err.textContent = why;
        return;
      }
      $('#exportlink')?.remove();
      ev.target.append(await exportLink(ev.target.elements.exportpass.value));
    },
  },
  h('h3', { i18n: 'export_key' }),
  secretField('exportpass', 'export_pass', 'new-password'),
  h('button', { type: 'submit', id: 'exportdo', i18n: 'export_do' }),
  err);
}

function keyReadyScreen() {
  return h('section.card', { id: 'keyready' },
    h('h2', { i18n: 'key_ready' }),
    h('p.warn', { i18n: 'storage_note' }),
    h('p.fp', {}, own.fingerprint),
    exportForm(),
    h('button.primary', { type: 'button', id: 'continue', i18n: 'continue', onclick: () => show(mainScreen()) }));
}

function mainScreen() {
  const results = h('ul.results', { id: 'results' });
  const dialogs = h('ul.results', { id: 'dialogs' },
    ...store.get(store.dialogsName(me.user.username), []).map((u) => userItem({ username: u })));
  const search = h('input', { id: 'search', type: 'search', autocomplete: 'off', 'data-i18n-ph': 'search_ph', placeholder: t('search_ph') });
  const err = errorLine();
  search.addEventListener('input', async () => {
    const p = search.value.trim();
    if (!p) {
      results.replaceChildren();
      return;
    }
    try {
      const r = await api.search(p);
      results.replaceChildren(...r.users.filter((u) => u.username !== me.user.username).map(userItem));
      err.textContent = '';
    } catch (e) {
      err.textContent = e.message;
    }
  });
  startWatch();
  return h('section', { id: 'mainscreen' },
    h('header.roombar', {},
      h('span', { id: 'whoami' }, tx('logged_in_as', { u: me.user.username })),
      h('button', { type: 'button', id: 'mykey', i18n: 'my_key', onclick: () => myKeyDialog() }),
      h('button', { type: 'button', id: 'logout', i18n: 'logout', onclick: () => logout() })),
    h('div.card', {}, h('h2', { i18n: 'dialogs' }), dialogs),
    h('div.card', {}, h('h2', { i18n: 'find_user' }), search, err, results));
}

function userItem(u, { fresh = false } = {}) {
  return h('li', {}, h('button.user', {
    type: 'button',
    dataset: { user: u.username },
    onclick: () => openDialog(u.username).catch((e) => env.problem(e.message)),
  }, u.username, u.full_name ? ` — ${u.full_name}` : '', fresh ? h('span.badge', { i18n: 'new_dialog' }) : null));
}

// startWatch listens for dialogs other users open with this one while the main screen shows.
function startWatch() {
  stopWatch();
  const w = new DialogWatch(env.wsURL(), sessionTicket);
  w.addEventListener('dialog', (ev) => noteDialog(ev.detail.from));
  w.addEventListener('live', (ev) => {
    const list = $('#dialogs');
    if (list) list.dataset.live = ev.detail ? 'yes' : 'no';
    else if (watch === w) stopWatch(); // the main screen is gone without a stop: do not hold a session for it
  });
  watch = w;
  w.start();
}

function stopWatch() {
  watch?.stop();
  watch = null;
}

// noteDialog puts a user who opened a dialog with this one at the top of the recent dialogs, and on the
// main screen if it shows, marked new. It is called from the main screen's watch and from a dialog's own
// session (the relay tells every logged-in session).
export function noteDialog(from) {
  if (!me || from === me.user.username) return;
  const name = store.dialogsName(me.user.username);
  store.set(name, [from, ...store.get(name, []).filter((u) => u !== from)].slice(0, 50));
  const list = $('#dialogs');
  if (!list) return;
  list.querySelector(`button[data-user="${CSS.escape(from)}"]`)?.parentElement.remove();
  list.prepend(userItem({ username: from }, { fresh: true }));
}

function myKeyDialog() {
  $('#mykeydialog')?.remove();
  const d = h('dialog', { id: 'mykeydialog' },
    h('h2', { i18n: 'your_key' }),
    h('dl', {},
      h('dt', { i18n: 'algorithm' }), h('dd', {}, `${own.algorithm}${own.bits ? ` ${own.bits}` : ''}`),
      h('dt', { i18n: 'created' }), h('dd', {}, new Date(own.created).toLocaleString()),
      h('dt', { i18n: 'fingerprint' }), h('dd.fp', { id: 'myfp' }, own.fingerprint)),
    h('details', {}, h('summary', { i18n: 'armored' }), h('pre.armored', {}, own.armored)),
    exportForm(),
    h('div.row', {},
      h('button.danger', {
        type: 'button',
        i18n: 'regenerate',
        onclick: () => {
          if (!window.confirm(t('forgot_warning'))) return;
          d.close();
          show(keySetupScreen());
        },
      }),
      h('button', { type: 'button', id: 'mykeyclose', i18n: 'close', autofocus: true, onclick: () => d.close() })));
  document.body.append(d);
  d.showModal();
}

async function logout() {
  stopWatch();
  localStorage.removeItem(LOGGED_IN);
  tickets.forget();
  await api.logout().catch(() => {});
  await env.crypto().call('wipe').catch(() => {});
  me = null;
  own = null;
  show(loginScreen());
}

// tickets proves the key for a WebSocket ticket only when the last one is no longer good (docs/accounts.md §7):
// a reconnect within its lifetime needs no signature.
const tickets = new TicketKeeper(async () => {
  const c = await api.sessionChallenge();
  const signature = await env.crypto().call('sign', { text: c.challenge });
  return api.sessionProof(c.challenge, signature);
});
const sessionTicket = () => tickets.before();

// openDialog checks the peer's directory key against the pinned fingerprint (TOFU) and enters the
// dialog room. A changed key stops here with a blocking warning.
async function openDialog(name) {
  const d = await api.openDialog(name);
  const k = await api.userKey(name);
  const pins = store.get(store.pinsName(me.user.username), {});
  const fp = k.key.fingerprint;
  const peer = await env.crypto().call('peerKey', { armored: k.key.armored });
  if (peer.fingerprint.replace(/ /g, '') !== fp) throw new Error('the directory answered with a key whose fingerprint does not match');
  const go = async () => {
    stopWatch(); // the dialog's own session hears of new dialogs from here on
    pins[name] = fp;
    store.set(store.pinsName(me.user.username), pins);
    const list = store.get(store.dialogsName(me.user.username), []);
    if (!list.includes(name)) store.set(store.dialogsName(me.user.username), [name, ...list].slice(0, 50));
    await env.enterDialog({ room: d.room, cap: d.cap, peerName: name, peerArmored: k.key.armored, own, beforeOpen: sessionTicket, back: () => show(mainScreen()) });
  };
  if (pins[name] && pins[name] !== fp) {
    keyChangedDialog(name, pins[name], peer, go);
    return;
  }
  await go();
}

function keyChangedDialog(name, oldFp, peer, go) {
  $('#keychange')?.remove();
  const d = h('dialog', { id: 'keychange' },
    h('h2.bad', { i18n: 'keychange_title' }),
    h('p', {}, tx('dir_keychange_text', { u: name })),
    h('dl', {},
      h('dt', { i18n: 'old_fp' }), h('dd.fp', {}, oldFp.match(/.{1,4}/g).join(' ')),
      h('dt', { i18n: 'new_fp' }), h('dd.fp', { id: 'newfp' }, peer.fingerprint),
      h('dt', { i18n: 'safety' }), h('dd.safety', {}, peer.safety)),
    h('div.row', {},
      h('button.primary', { type: 'button', id: 'kccancel', i18n: 'cancel', autofocus: true, onclick: () => d.close() }),
      h('button', {
        type: 'button',
        id: 'kctrust',
        i18n: 'trust_new',
        onclick: async () => {
          d.close();
          await go().catch((e) => env.problem(e.message));
        },
      })));
  d.addEventListener('cancel', (ev) => ev.preventDefault());
  document.body.append(d);
  d.showModal();
}
