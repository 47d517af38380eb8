// Module accounts drives the account screens: register, log in, key setup or unlock, search,
// and opening a dialog (docs/accounts.md). The chat itself is the room screen of app.mjs.
import * as prekeys from './prekeys.mjs';
import * as api from './api.mjs';
import { missing, missingPassphrase } from './policy.mjs';
import { t, errorText } from './i18n.mjs';
import { $, h, tx, fx, show, field, fieldError, check, required } from './ui.mjs';
import { DialogWatch } from './notify.mjs';
import { TicketKeeper } from './ticket.mjs';
import { unread } from './mailbox.mjs';
import { dialogOutbox } from './outbox.mjs';

// env is given by app.mjs: {crypto, caps, problem, home, enterDialog, wsURL}.
let env = null;
let me = null; // {user, key}: the logged-in user and its published key
let own = null; // this tab's unlocked key details
let watch = null; // the main screen's DialogWatch, while it shows

const store = {
  keyName: (u) => `cleanrelay.key.${u}`,
  pinsName: (u) => `cleanrelay.pins.${u}`,
  dialogsName: (u) => `cleanrelay.dialogs.${u}`,
  verifiedName: (u) => `cleanrelay.verified.${u}`,
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

// input is a text input of an account form; field() lays it out with its label and error line.
function input(id, props = {}) {
  return h('input', { id, name: id, ...props });
}

// secretField is a masked input with a show/hide toggle, laid out with its label, hint and error line.
function secretField(id, key, autocomplete, hint = null) {
  const el = h('input', { id, name: id, type: 'password', autocomplete });
  const toggle = h('button.toggle', {
    type: 'button',
    id: `${id}-toggle`,
    i18n: 'show',
    label: 'show_password',
    'aria-pressed': 'false',
    'aria-controls': id,
    onclick: () => {
      const shown = el.type === 'text';
      el.type = shown ? 'password' : 'text';
      toggle.textContent = t(shown ? 'show' : 'hide');
      toggle.dataset.i18n = shown ? 'show' : 'hide';
      toggle.setAttribute('aria-pressed', String(!shown));
    },
  });
  return field(key, h('span.secret', {}, el, toggle), { hint });
}

function policyMessage(p) {
  const miss = missing(p);
  return miss.length ? t('missing_prefix') + miss.map((m) => t(`missing_${m}`)).join(', ') : '';
}

function passphraseMessage(p) {
  const miss = missingPassphrase(p);
  return miss.length ? t('missing_prefix_pass') + miss.map((m) => t(`missing_${m}`)).join(', ') + t('passphrase_or_long') : '';
}

// passphraseProblem checks the key passphrase in the field with id, shows what is wrong next to it and
// returns it ('' when the passphrase is acceptable).
export function passphraseProblem(id) {
  const why = passphraseMessage(document.getElementById(id)?.value ?? '');
  fieldError(id, why);
  if (why) document.getElementById(id)?.focus();
  return why;
}

// The shapes the relay enforces (docs/accounts.md §3), checked here first so the page can say what is wrong
// next to the field; the relay's answer still decides.
const USERNAME = /^[A-Za-z0-9](?:[A-Za-z0-9]|[._-](?=[A-Za-z0-9])){2,31}$/;
const EMAIL = /^[!-?A-~]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+$/;
const checkUsername = (v) => required(v) || (USERNAME.test(v.trim()) ? '' : t('username_bad'));
const checkEmail = (v) => (!v.trim() || EMAIL.test(v.trim()) ? '' : t('email_bad'));

function errorLine() {
  return h('p.bad', { role: 'alert', id: 'formerror' });
}

// formError shows an error from the relay (by its code, in the page's language) or from the client.
function formError(el, e) {
  el.textContent = errorText(e);
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
  return h('section', { id: 'registerscreen' }, h('form.card.form', {
    method: 'post',
    novalidate: true,
    onsubmit: async (ev) => {
      ev.preventDefault();
      err.textContent = '';
      const ok = check({
        regname: checkUsername,
        fullname: required,
        email: checkEmail,
        regpass: (v) => policyMessage(v),
      });
      if (!ok) return;
      const f = ev.target.elements;
      try {
        const r = await api.register({ username: f.regname.value, full_name: f.fullname.value, email: f.email.value, password: f.regpass.value });
        show(loginScreen(r.user.username, 'registered'));
      } catch (e) {
        formError(err, e);
      }
    },
  },
  h('h2', { i18n: 'register' }),
  field('username', input('regname', { autocomplete: 'username', autocapitalize: 'none', spellcheck: 'false', 'aria-required': 'true', autofocus: true }), { hint: 'username_bad' }),
  field('full_name', input('fullname', { autocomplete: 'name', 'aria-required': 'true' })),
  field('email', input('email', { type: 'email', autocomplete: 'email', inputmode: 'email' })),
  secretField('regpass', 'password', 'new-password', 'password_rule'),
  err,
  h('div.row', {},
    h('button.primary', { type: 'submit', id: 'registerdo', i18n: 'register' }),
    h('button', { type: 'button', id: 'tologin2', i18n: 'login', onclick: () => show(loginScreen()) }))));
}

function loginScreen(username = '', note = null) {
  const err = errorLine();
  return h('section', { id: 'loginscreen' }, h('form.card.form', {
    method: 'post',
    novalidate: true,
    onsubmit: async (ev) => {
      ev.preventDefault();
      err.textContent = '';
      if (!check({ loginname: required, loginpass: required })) return;
      const f = ev.target.elements;
      try {
        await api.login(f.loginname.value, f.loginpass.value);
        localStorage.setItem(LOGGED_IN, '1');
        await afterLogin(await api.me());
      } catch (e) {
        formError(err, e);
      }
    },
  },
  h('h2', { i18n: 'login' }),
  note ? h('p.ok', { i18n: note, role: 'status' }) : null,
  field('username', input('loginname', { autocomplete: 'username', autocapitalize: 'none', spellcheck: 'false', 'aria-required': 'true', value: username, autofocus: !username })),
  secretField('loginpass', 'password', 'current-password'),
  err,
  h('div.row', {},
    h('button.primary', { type: 'submit', id: 'logindo', i18n: 'login' }),
    h('button', { type: 'button', id: 'toregister2', i18n: 'register', onclick: () => show(registerScreen()) }))));
}

async function afterLogin(m) {
  me = m;
  const stored = store.get(store.keyName(me.user.username), null);
  show(stored ? unlockScreen(stored) : keySetupScreen());
}

function unlockScreen(stored) {
  const err = errorLine();
  const screen = h('section', { id: 'unlockscreen' }, h('form.card.form', {
    novalidate: true,
    onsubmit: async (ev) => {
      ev.preventDefault();
      err.textContent = '';
      if (!check({ unlockpass: required })) return;
      try {
        own = await env.crypto().call('unlock', { armored: stored, passphrase: ev.target.elements.unlockpass.value });
        await ensurePublished();
        show(mainScreen());
      } catch (e) {
        err.textContent = /wrong passphrase/.test(e.message) ? t('wrong_passphrase') : errorText(e);
      }
    },
  },
  h('h2', { i18n: 'unlock_title' }),
  h('p', {}, tx('logged_in_as', { u: me.user.username })),
  secretField('unlockpass', 'passphrase', 'current-password'),
  err,
  h('div.row', {},
    h('button.primary', { type: 'submit', id: 'unlockdo', i18n: 'unlock' }),
    h('button', { type: 'button', id: 'logout', i18n: 'logout', onclick: () => logout() })),
  h('div.row', {},
    h('button.danger', {
      type: 'button',
      id: 'forgot',
      i18n: 'forgot',
      onclick: () => {
        if (window.confirm(t('forgot_warning'))) show(keySetupScreen());
      },
    }))));
  screen.querySelector('#unlockpass').setAttribute('autofocus', '');
  return screen;
}

// ensurePublished publishes this tab's key when the directory holds another one (or none),
// with the proof of possession the directory asks for.
async function ensurePublished() {
  await publishKey();
  // One-time prekeys for messages left while this account is away (docs/e2e.md §9); never in the way of login.
  await prekeys.start(env.crypto(), me.user.username).catch(() => null);
}

async function publishKey() {
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
  // Curve25519 first where WebCrypto has it (Tor Browser does): an RSA-4096 account key signs every epoch of a
  // dialog, about a second each without a JIT (docs/e2e.md §14). A v6 key is offered there too, never first:
  // no GnuPG release imports it (docs/accounts.md §5).
  const type = h('select', { id: 'acctkeytype' },
    caps.curve25519 ? h('option', { value: 'curve25519', i18n: 'acct_key_curve' }) : null,
    h('option', { value: 'rsa', i18n: 'acct_key_rsa' }),
    caps.curve25519 ? h('option', { value: 'v6', i18n: 'acct_key_v6' }) : null);
  const progress = h('p', { id: 'keyprogress', hidden: true, role: 'status' }, h('progress'), ' ', tx('making_key'));
  const gen = h('form.card.form', {
    novalidate: true,
    onsubmit: async (ev) => {
      ev.preventDefault();
      err.textContent = '';
      if (passphraseProblem('newpass')) return;
      const pass = ev.target.elements.newpass.value;
      progress.hidden = false;
      try {
        own = await env.crypto().call('generate', { type: type.value, name: me.user.username, email: me.user.email || undefined });
        await keep(pass);
        await ensurePublished();
        show(keyReadyScreen());
      } catch (e) {
        progress.hidden = true;
        formError(err, e);
      }
    },
  },
  h('h2', { i18n: 'keysetup_title' }),
  h('p', { i18n: 'keysetup_text' }),
  field('key_type', type, { hint: caps.curve25519 ? 'acct_key_hint' : null }),
  secretField('newpass', 'passphrase', 'new-password', 'passphrase_rule'),
  h('div.row', {}, h('button.primary', { type: 'submit', id: 'generate', i18n: 'generate' })),
  progress,
  err);
  const ierr = h('p.bad', { role: 'alert', id: 'importerror' });
  const imp = h('form.card.form', {
    novalidate: true,
    onsubmit: async (ev) => {
      ev.preventDefault();
      ierr.textContent = '';
      const f = ev.target.elements;
      const file = f.importfile.files[0];
      if (!check({ importfile: () => (file ? '' : t('required')), importpass: required })) return;
      try {
        own = await env.crypto().call('importZip', { bytes: new Uint8Array(await file.arrayBuffer()), passphrase: f.importpass.value });
        await keep(f.importpass.value);
        await ensurePublished();
        show(mainScreen());
      } catch (e) {
        ierr.textContent = /wrong passphrase/.test(e.message) ? t('wrong_passphrase') : errorText(e);
      }
    },
  },
  h('h2', { i18n: 'import_title' }),
  field('import_file', input('importfile', { type: 'file', accept: '.zip,application/zip' })),
  secretField('importpass', 'passphrase', 'current-password'),
  h('div.row', {}, h('button', { type: 'submit', id: 'importdo', i18n: 'import' })),
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
  return h('form.export.form', {
    novalidate: true,
    onsubmit: async (ev) => {
      ev.preventDefault();
      if (passphraseProblem('exportpass')) return;
      $('#exportlink')?.remove();
      ev.target.append(await exportLink(ev.target.elements.exportpass.value));
    },
  },
  h('h3', { i18n: 'export_key' }),
  secretField('exportpass', 'export_pass', 'new-password', 'passphrase_rule'),
  h('div.row', {}, h('button', { type: 'submit', id: 'exportdo', i18n: 'export_do' })));
}

function keyReadyScreen() {
  return h('section.card', { id: 'keyready' },
    h('h2', { i18n: 'key_ready' }),
    h('p.warn', { i18n: 'storage_note' }),
    h('p.fp', {}, own.fingerprint),
    exportForm(),
    h('button.primary', { type: 'button', id: 'continue', i18n: 'continue', onclick: () => show(mainScreen()) }));
}

// SEARCH_EVERY is the relay's search rate once its burst is spent (docs/accounts.md §5: one every 2 s); the
// page asks no faster, and only once typing pauses for SEARCH_SETTLE.
const SEARCH_EVERY = 2000;
const SEARCH_SETTLE = 400;
const NAME_PREFIX = /^[A-Za-z0-9._-]{1,32}$/;

// searcher runs the user search of the main screen: debounced, paced under the relay's rate limit, with a
// waiting state and "no user found".
function searcher(search, results, status) {
  let timer = 0;
  let last = -Infinity;
  const say = (key) => {
    status.replaceChildren(key ? tx(key) : '');
    results.setAttribute('aria-busy', String(key === 'searching'));
  };
  const run = async () => {
    const p = search.value.trim();
    if (!NAME_PREFIX.test(p)) {
      results.replaceChildren();
      say('no_user');
      return;
    }
    last = Date.now();
    try {
      const r = await api.search(p);
      if (search.value.trim() !== p) return; // the user typed on: the next search is on its way
      const found = r.users.filter((u) => u.username !== me.user.username);
      results.replaceChildren(...found.map((u) => userItem(u)));
      say(found.length ? '' : 'no_user');
    } catch (e) {
      if (e.code === 'rate_limited') {
        timer = setTimeout(run, SEARCH_EVERY);
        return;
      }
      say('');
      status.replaceChildren(errorText(e));
    }
  };
  search.addEventListener('input', () => {
    clearTimeout(timer);
    if (!search.value.trim()) {
      results.replaceChildren();
      say('');
      return;
    }
    say('searching');
    timer = setTimeout(run, Math.max(SEARCH_SETTLE, last + SEARCH_EVERY - Date.now()));
  });
}

function mainScreen() {
  const results = h('ul.results', { id: 'results' });
  const known = store.get(store.dialogsName(me.user.username), []);
  const dialogs = h('ul.results', { id: 'dialogs' }, ...known.map((u) => userItem({ username: u })));
  const search = h('input', { id: 'search', type: 'search', autocomplete: 'off', autocapitalize: 'none', spellcheck: 'false', 'data-i18n-ph': 'search_ph', placeholder: t('search_ph') });
  const status = h('p', { id: 'searchstatus', role: 'status' });
  searcher(search, results, status);
  startWatch();
  const screen = h('section', { id: 'mainscreen' },
    h('header.roombar', {},
      h('span', { id: 'whoami' }, tx('logged_in_as', { u: me.user.username })),
      h('button', { type: 'button', id: 'mykey', i18n: 'my_key', onclick: () => myKeyDialog() }),
      h('button', { type: 'button', id: 'logout', i18n: 'logout', onclick: () => logout() })),
    h('div.card', {}, h('h2', { i18n: 'dialogs' }), known.length ? null : h('p.note', { id: 'nodialogs', i18n: 'no_dialogs' }), dialogs),
    h('div.card', {}, h('h2', { i18n: 'find_user' }), field('search_label', search), status, results));
  checkMailbox();
  return screen;
}

// checkMailbox asks the relay what waits for this user: every sender gets a place in the dialogs list with
// its unread count, and messages the relay wiped unread (a changed key) are marked failed in their dialog.
async function checkMailbox() {
  const s = await unread.refresh();
  if (!me) return;
  for (const u of s?.undeliverable ?? []) {
    dialogOutbox(me.user.username, u.to).undeliverable([u.id], { code: u.reason === 'key_changed' ? 'key_changed' : 'revoked' });
  }
}

// paintUnread shows each dialog's unread count in the dialogs list, adding the senders it does not hold.
function paintUnread() {
  const list = $('#dialogs');
  if (!list || !me) return;
  for (const from of unread.counts.keys()) {
    if (!list.querySelector(`button[data-user="${CSS.escape(from)}"]`)) noteDialog(from, false);
  }
  for (const b of list.querySelectorAll('button.user')) {
    const n = unread.counts.get(b.dataset.user) ?? 0;
    b.querySelector('.unread')?.remove();
    b.dataset.unread = String(n);
    if (n) b.append(h('span.unread', { label: 'unread_label' }, String(n)));
  }
}
unread.addEventListener('change', paintUnread);

function userItem(u, { fresh = false } = {}) {
  return h('li', {}, h('button.user', {
    type: 'button',
    dataset: { user: u.username },
    onclick: () => openDialog(u.username).catch((e) => env.problem(e)),
  }, u.username, u.full_name ? ` — ${u.full_name}` : '', fresh ? h('span.badge', { i18n: 'new_dialog' }) : null));
}

// startWatch listens for dialogs other users open with this one while the main screen shows.
function startWatch() {
  stopWatch();
  const w = new DialogWatch(env.wsURL(), sessionTicket);
  w.addEventListener('dialog', (ev) => noteDialog(ev.detail.from));
  w.addEventListener('mail', () => unread.mail());
  w.addEventListener('key', () => checkMailbox());
  w.addEventListener('live', (ev) => {
    const list = $('#dialogs');
    if (list) list.dataset.live = ev.detail ? 'yes' : 'no';
    else if (watch === w) stopWatch(); // the main screen is gone without a stop: do not hold a session for it
    // Live again: ask what waits, for the mail notices sent while this session was not there to hear them.
    if (list && ev.detail) checkMailbox();
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
export function noteDialog(from, fresh = true) {
  if (!me || from === me.user.username) return;
  const name = store.dialogsName(me.user.username);
  store.set(name, [from, ...store.get(name, []).filter((u) => u !== from)].slice(0, 50));
  const list = $('#dialogs');
  if (!list) return;
  $('#nodialogs')?.remove();
  list.querySelector(`button[data-user="${CSS.escape(from)}"]`)?.parentElement.remove();
  list.prepend(userItem({ username: from }, { fresh }));
  if (!fresh) paintUnread();
}

function myKeyDialog() {
  $('#mykeydialog')?.remove();
  const d = h('dialog', { id: 'mykeydialog' },
    h('h2', { i18n: 'your_key' }),
    h('dl', {},
      h('dt', { i18n: 'algorithm' }), h('dd', {}, `${own.algorithm}${own.bits ? ` ${own.bits}` : ''}`),
      h('dt', { i18n: 'created' }), h('dd', {}, fx('date', new Date(own.created).getTime())),
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
  await prekeys.forget();
  stopWatch();
  unread.clear();
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
  if (peer.fingerprint.replace(/ /g, '') !== fp) throw new Error(t('dir_mismatch'));
  const go = async () => {
    stopWatch(); // the dialog's own session hears of new dialogs from here on
    pins[name] = fp;
    store.set(store.pinsName(me.user.username), pins);
    const list = store.get(store.dialogsName(me.user.username), []);
    if (!list.includes(name)) store.set(store.dialogsName(me.user.username), [name, ...list].slice(0, 50));
    unread.read(name);
    await env.enterDialog({ room: d.room, cap: d.cap, peerName: name, peerArmored: k.key.armored, peerFp: fp, outbox: dialogOutbox(me.user.username, name), onPeerKey: peerKeyChanged, own, verified: verifiedSet(name), beforeOpen: sessionTicket, back: () => show(mainScreen()) });
  };
  if (pins[name] && pins[name] !== fp) {
    keyChangedDialog(name, pins[name], peer, go);
    return;
  }
  await go();
}

// verifiedSet holds the Verify mark of this user's dialog with name, kept in this browser next to the pins. It
// remembers the one fingerprint the user verified, so a changed key is not verified.
function verifiedSet(name) {
  const key = store.verifiedName(me.user.username);
  const all = () => store.get(key, {});
  return {
    has: (fp) => all()[name] === fp,
    add: (fp) => store.set(key, { ...all(), [name]: fp }),
    delete: (fp) => {
      const v = all();
      if (v[name] !== fp) return;
      delete v[name];
      store.set(key, v);
    },
  };
}

// peerKeyChanged runs when the relay says that the peer of the open dialog room published a new key: sending
// is blocked already; the new key is fetched and, if it is not the pinned one, shown with its safety code
// until the user accepts it (or leaves the dialog blocked).
async function peerKeyChanged(room) {
  const name = room.dialog.peerName;
  checkMailbox(); // what waited for the old key was wiped: its messages are marked failed
  let k;
  try {
    k = await api.userKey(name);
  } catch (e) {
    env.problem(e); // no key any more (revoked): the dialog stays blocked
    return;
  }
  const pins = store.get(store.pinsName(me.user.username), {});
  const fp = k.key.fingerprint;
  const peer = await env.crypto().call('peerKey', { armored: k.key.armored });
  if (peer.fingerprint.replace(/ /g, '') !== fp) {
    env.problem(t('dir_mismatch'));
    return;
  }
  const accept = async () => {
    pins[name] = fp;
    store.set(store.pinsName(me.user.username), pins);
    await room.acceptKey(k.key.armored, fp);
  };
  if (pins[name] === fp) {
    await accept();
    return;
  }
  keyChangedDialog(name, pins[name], peer, accept);
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
          await go().catch((e) => env.problem(e));
        },
      })));
  d.addEventListener('cancel', (ev) => ev.preventDefault());
  document.body.append(d);
  d.showModal();
}
