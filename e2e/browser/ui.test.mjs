// End-to-end on a phone-sized screen (412 × 915, Tor Browser for Android's size class), in Chromium and in Firefox
// ESR with Safer-like preferences: every screen fits without sideways scrolling and passes axe-core in English and
// Russian; an anonymous room is created, joined, used, verified and burned from the keyboard alone; the Verify
// screen's QR code decodes to the code the other side shows; an accounts walk in Russian ends in a verified dialog
// whose mark a key change clears.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { PNG } from 'pngjs';
import jsQR from 'jsqr';
import { startRelay, launch, openPage, shot, press, fill, repo } from './harness.mjs';

const KINDS = (process.env.CR_BROWSERS ?? 'chromium,firefox').split(',').filter(Boolean);
const PHONE = { width: 412, height: 915 };
// The narrowest phones in use, Tor Browser's smallest letterboxed window, and a desktop one.
const OTHER_SIZES = [{ width: 320, height: 640 }, { width: 600, height: 400 }, { width: 1000, height: 900 }];
const DESKTOP = { width: 1400, height: 900 };
const AXE = readFileSync(new URL('../node_modules/axe-core/axe.min.js', import.meta.url), 'utf8');
// CR_SCREENSHOTS=1 refreshes the README's screenshots in docs/screenshots/.
const DOCS = process.env.CR_SCREENSHOTS ? join(repo, 'docs/screenshots') : null;
if (DOCS) mkdirSync(DOCS, { recursive: true });

// DOC_SHOTS are the screenshots the README shows.
const DOC_SHOTS = ['firefox-desktop-room-en', 'chromium-desktop-verify-ru', 'firefox-phone-room-en', 'chromium-phone-dialog-ru'];

async function docShot(page, name) {
  if (DOCS && DOC_SHOTS.includes(name)) await page.screenshot({ path: join(DOCS, `${name}.png`) });
}

// overflow lists what sticks out sideways: the page's own scroll width, any visible element past the viewport's
// edges, and any open dialog wider than itself.
function overflow(page) {
  return page.evaluate(() => {
    const out = [];
    const w = window.innerWidth;
    if (document.documentElement.scrollWidth > w) out.push(`page scrollWidth ${document.documentElement.scrollWidth} > ${w}`);
    for (const el of document.querySelectorAll('body *')) {
      const r = el.getBoundingClientRect();
      // Only what is rendered: Firefox keeps stale boxes for the content of a closed <details>.
      if (!r.width || !r.height || el.closest('.sr-only') || !el.checkVisibility()) continue;
      if (r.right > w + 0.5 || r.left < -0.5) out.push(`${el.tagName.toLowerCase()}#${el.id}.${el.className} spans ${Math.round(r.left)}…${Math.round(r.right)}`);
    }
    for (const d of document.querySelectorAll('dialog[open]')) {
      if (d.scrollWidth > d.clientWidth) out.push(`dialog#${d.id} scrolls sideways: ${d.scrollWidth} > ${d.clientWidth}`);
    }
    return out;
  });
}

// axe runs axe-core in the page (injected by the test; the relay never serves it) and returns the serious and
// critical violations.
async function axe(page) {
  if (!(await page.evaluate(() => typeof globalThis.axe === 'object'))) await page.evaluate(AXE);
  return page.evaluate(async () => {
    const r = await globalThis.axe.run(document, { resultTypes: ['violations'] });
    return r.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical')
      .map((v) => `${v.id} (${v.impact}): ${v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join(', ')}`);
  });
}

const lang = (page) => page.evaluate(() => document.documentElement.lang);

// screen checks the screen now showing in both languages: no sideways overflow (at 412 px, and in the second
// language also at OTHER_SIZES), Send on screen at 412 × 915 where there is one, and no serious axe finding,
// in the current language and after switching; it switches back and leaves a screenshot of each.
async function screen(page, name) {
  const first = await lang(page);
  for (const l of [first, first === 'en' ? 'ru' : 'en']) {
    if ((await lang(page)) !== l) await page.$eval('#lang', (b) => b.click());
    assert.equal(await lang(page), l);
    assert.deepEqual(await overflow(page), [], `${name} (${l}) is wider than the screen`);
    assert.deepEqual(await axe(page), [], `${name} (${l}) has serious accessibility problems`);
    if (await page.$('#send') && !(await page.$('dialog[open]'))) {
      await page.evaluate(() => window.scrollTo(0, 0));
      assert.ok(await inView(page, '#send'), `${name} (${l}): Send is below the fold`);
    }
    await shot(page, `${page.kind}-phone-${name}-${l}`);
    if (l === first) continue;
    for (const v of OTHER_SIZES) {
      await page.setViewport(v);
      assert.deepEqual(await overflow(page), [], `${name} (${l}) is wider than a ${v.width} × ${v.height} screen`);
    }
    await page.setViewport(PHONE);
  }
  await page.$eval('#lang', (b) => b.click());
  assert.equal(await lang(page), first);
}

// tabTo presses Tab until sel has the focus, the way a keyboard user reaches a control.
async function tabTo(page, sel, { max = 60, back = false } = {}) {
  // Keys reach only the window in front (Firefox acts on no key press in a background tab).
  await page.bringToFront();
  for (let i = 0; i < max; i++) {
    if (await page.evaluate((s) => document.activeElement?.matches(s), sel)) return;
    if (back) {
      await page.keyboard.down('Shift');
      await page.keyboard.press('Tab');
      await page.keyboard.up('Shift');
    } else {
      await page.keyboard.press('Tab');
    }
  }
  const at = await page.evaluate(() => `${document.activeElement?.tagName}#${document.activeElement?.id}`);
  assert.fail(`Tab never reached ${sel} (focus is on ${at})`);
}

async function focused(page) {
  return page.evaluate(() => document.activeElement?.id || document.activeElement?.tagName);
}

// inView says whether sel is inside the viewport with the page scrolled to the top.
async function inView(page, sel) {
  return page.$eval(sel, (el) => {
    const r = el.getBoundingClientRect();
    return r.top >= 0 && r.left >= 0 && r.bottom <= window.innerHeight && r.right <= window.innerWidth && r.width > 0;
  });
}

// qrText reads the QR code of the open Verify screen from a screenshot, with jsQR.
async function qrText(page) {
  const el = await page.$('#qr svg');
  const png = PNG.sync.read(Buffer.from(await el.screenshot({ type: 'png' })));
  const code = jsQR(new Uint8ClampedArray(png.data.buffer, png.data.byteOffset, png.data.length), png.width, png.height);
  assert.ok(code, 'the QR code does not decode');
  return code.data;
}

async function phonePage(b, url, language = null) {
  const p = await openPage(b, url);
  p.kind = b.kind;
  await p.setViewport(PHONE);
  if (language && (await lang(p)) !== language) await p.$eval('#lang', (x) => x.click());
  return p;
}

async function fastKey(page, sel) {
  const fast = await page.$eval(sel, (s) => [...s.options].some((o) => o.value === 'curve25519'));
  if (fast) await page.select(sel, 'curve25519');
}

async function backToMain(page) {
  await press(page, '#back');
  await page.waitForSelector('#mainscreen');
}

// makeKey makes an account's key pair on the key setup screen (Curve25519 where offered: it is fast).
async function makeKey(page, passphrase) {
  await page.waitForSelector('#keysetup', { timeout: 60000 });
  await fastKey(page, '#acctkeytype');
  await fill(page, '#newpass', passphrase);
  await press(page, '#generate');
  await page.waitForSelector('#keyready', { timeout: 180000 });
}

async function ready(page) {
  await page.waitForSelector('#status[data-ready="yes"]', { timeout: 120000 });
}

for (const kind of KINDS) {
  test(`${kind}: phone layout, keyboard, Verify with QR, Russian, axe-core`, { timeout: 900000 }, async (t) => {
    const relay = await startRelay();
    const b = await launch(kind);
    try {
      let alice;
      let bob;
      await t.test('an anonymous room from the keyboard alone, verified both ways and burned', async () => {
        alice = await phonePage(b, relay.url, 'en');
        await screen(alice, 'home');
        await fastKey(alice, '#keytype');
        await tabTo(alice, '#create');
        await alice.keyboard.press('Enter');
        await alice.waitForSelector('#invitelink', { timeout: 120000 });
        assert.equal(await focused(alice), 'invitelink', 'focus did not move to the invite link');
        const invite = await alice.$eval('#invitelink', (e) => e.value);
        await screen(alice, 'room-waiting');
        if (kind === 'chromium') {
          // "Copied" goes back to "Copy" (Firefox gives no clipboard permission to a test page).
          await alice.browserContext().overridePermissions(new URL(relay.url).origin, ['clipboard-read', 'clipboard-write', 'clipboard-sanitized-write']);
          await alice.bringToFront();
          await press(alice, '#copy');
          await alice.waitForFunction(() => document.querySelector('#copy').textContent === 'Copied', { polling: 50, timeout: 10000 });
          assert.equal(await alice.evaluate(() => navigator.clipboard.readText()), invite);
          await alice.waitForFunction(() => document.querySelector('#copy').textContent === 'Copy', { polling: 100, timeout: 30000 });
        }

        bob = await phonePage(b, invite, 'en');
        await screen(bob, 'join');
        await fastKey(bob, '#keytype');
        await tabTo(bob, '#join');
        await bob.keyboard.press('Enter');
        await Promise.all([ready(alice), ready(bob)]);
        for (const p of [alice, bob]) assert.equal(await focused(p), 'text', 'focus did not move to the message box when it became usable');
        assert.equal(await alice.$eval('#invite', (e) => e.hidden), true, 'the invite link still shows in a full room');
        assert.doesNotMatch(await alice.$eval('#room', (e) => e.textContent), /Export your key pair/, 'an anonymous room asks to export its one-time key');

        // A third visitor with the same link hears that the room is full, at the top, before making a key.
        const carol = await phonePage(b, invite, 'ru');
        await press(carol, '#join');
        await carol.waitForSelector('#main > .problem', { timeout: 60000 });
        assert.match(await carol.$eval('.problem', (e) => e.textContent), /Комната заполнена/);
        await screen(carol, 'room-full');
        await carol.close();

        const m1 = `hello from bob's keyboard ${randomBytes(4).toString('hex')}`;
        await bob.bringToFront();
        await bob.keyboard.type(m1);
        await bob.keyboard.press('Enter');
        await alice.waitForFunction((v) => [...document.querySelectorAll('.msg.theirs .text')].some((e) => e.textContent === v), { timeout: 60000, polling: 100 }, m1);
        await alice.bringToFront();
        await alice.keyboard.type('hi bob');
        await alice.keyboard.press('Enter');
        await bob.waitForFunction(() => [...document.querySelectorAll('.msg.theirs .text')].some((e) => e.textContent === 'hi bob'), { timeout: 60000, polling: 100 });
        for (const p of [alice, bob]) {
          await p.evaluate(() => window.scrollTo(0, 0));
          assert.ok(await inView(p, '#send'), 'Send is below the fold at 412 × 915');
          assert.equal(await p.$eval('#log', (e) => e.getAttribute('role')), 'log');
          assert.ok(await p.$eval('#log', (e) => e.getAttribute('aria-label')));
          assert.equal(await p.$eval('#text', (e) => e.labels.length), 1, 'the message box has no label');
        }
        await screen(alice, 'room-chat');
        await press(alice, '#e2e');
        await alice.waitForSelector('dialog#keys[open]');
        await screen(alice, 'keys');
        assert.ok(await inView(alice, 'dialog#keys .safety'), 'the safety code in the keys dialog is off screen');
        await press(alice, '#keysclose');

        // Verify both ways: each side's QR code decodes to the code the other side shows, then each marks.
        for (const [me, other] of [[alice, bob], [bob, alice]]) {
          // From the message box, where the user is, back to Verify in the header.
          await tabTo(me, '#verifybtn', { back: true });
          await me.keyboard.press('Enter');
          await me.waitForSelector('dialog#verify[open]');
          await screen(me, 'verify');
          await me.$eval('#lang', (x) => x.click());
          assert.match(await me.$eval('#verifytitle', (e) => e.textContent), /^Проверка: участник [12]$/);
          await me.$eval('#lang', (x) => x.click());
          assert.ok(await inView(me, '#safetycode'), 'the safety code is off screen');
          await press(other, '#verifybtn');
          await other.waitForSelector('dialog#verify[open]');
          const theirs = await other.$eval('#safetycode', (e) => e.textContent);
          assert.match(theirs, /^\d{5}( \d{5}){5}$/);
          assert.equal(await qrText(me), theirs, 'the QR code is not the code the other side shows');
          assert.equal(await me.$eval('#verifypeerfp', (e) => e.textContent), await other.$eval('#verifyownfp', (e) => e.textContent));
          await other.$eval('#verifyclose', (e) => e.click());
          assert.equal(await me.$eval('#verified', (e) => e.hidden), true, 'verified before the user said so');
          // Back from Close (Tab past a modal dialog's last control leaves the page for the browser's own UI).
          await tabTo(me, '#markverified', { back: true });
          await me.keyboard.press('Enter');
          await me.waitForFunction(() => document.querySelector('#markverified').getAttribute('aria-pressed') === 'true', { polling: 100 });
          await me.keyboard.press('Escape');
          await me.waitForFunction(() => !document.querySelector('dialog#verify[open]'), { polling: 100 });
          assert.equal(await me.$eval('#verified', (e) => e.hidden), false, 'no verified mark in the header');
        }
        await docShot(alice, `${kind}-phone-room-en`);

        await tabTo(alice, '#burn');
        await alice.keyboard.press('Enter');
        await Promise.all([alice.waitForSelector('#ended'), bob.waitForSelector('#ended')]);
        assert.equal(await focused(alice), 'newroom');
        assert.equal(await bob.$eval('#ended', (e) => e.dataset.reason), 'burned');
        await screen(bob, 'ended');
        assert.deepEqual(alice.errors.filter((e) => !/WebSocket|websocket/.test(e)), [], 'console errors');
      });

      await t.test('a dead invite and a broken one say so at the top, before any key is made', async () => {
        const dead = await phonePage(b, `${relay.url}#r=${'A'.repeat(22)}&c=${'A'.repeat(43)}&k=${'A'.repeat(43)}`, 'ru');
        await dead.evaluate(() => {
          globalThis.sawKeyMaking = false;
          new MutationObserver(() => {
            if (document.querySelector('[data-i18n="making_key"]')) globalThis.sawKeyMaking = true;
          }).observe(document.body, { childList: true, subtree: true });
        });
        await press(dead, '#join');
        await dead.waitForSelector('#main > .problem', { timeout: 60000 });
        assert.match(await dead.$eval('.problem', (e) => e.textContent), /Этой комнаты больше нет, или ссылка неверна/);
        assert.equal(await dead.$eval('#main', (e) => e.firstElementChild.className), 'problem');
        assert.equal(await dead.evaluate(() => location.hash), '');
        assert.equal(await dead.evaluate(() => globalThis.sawKeyMaking), false, 'a key was made for a dead invite');
        await screen(dead, 'invite-dead');
        await dead.close();
        const cut = await phonePage(b, `${relay.url}#r=${'A'.repeat(22)}&c=${'A'.repeat(20)}`, 'en');
        await cut.waitForSelector('#main > .problem');
        assert.match(await cut.$eval('.problem', (e) => e.textContent), /invite link is broken/);
        await cut.close();
      });

      await t.test('accounts in Russian: forms, a server error, search, a verified dialog a key change clears', async () => {
        const carol = `carol${randomBytes(3).toString('hex')}`;
        const dave = `dave${randomBytes(3).toString('hex')}`;
        const c = await phonePage(b, relay.url, 'ru');
        // The language is kept for the session and the switch names the language it switches to.
        await c.reload({ waitUntil: 'load' });
        await c.waitForSelector('body[data-ready="yes"]');
        assert.equal(await lang(c), 'ru');
        assert.equal(await c.$eval('#lang', (e) => e.textContent), 'English');

        await press(c, '#toregister');
        await c.waitForSelector('#registerscreen');
        await press(c, '#registerdo');
        assert.equal(await c.$eval('#regname-error', (e) => e.textContent), 'Заполните это поле.');
        assert.equal(await focused(c), 'regname');
        await fill(c, '#regname', carol);
        await fill(c, '#fullname', 'Карина Тестова');
        await fill(c, '#email', 'not-an-address');
        await fill(c, '#regpass', 'short');
        await press(c, '#registerdo');
        assert.match(await c.$eval('#email-error', (e) => e.textContent), /Это не адрес эл\. почты/);
        assert.match(await c.$eval('#regpass-error', (e) => e.textContent), /В пароле не хватает: .*заглавная буква/);
        await screen(c, 'register-errors');
        await fill(c, '#email', '');
        await fill(c, '#regpass', 'Carol-pass1!');
        await press(c, '#registerdo');
        await c.waitForSelector('#loginscreen');
        // A server error, in Russian: the name is taken now.
        await press(c, '#toregister2');
        await fill(c, '#regname', carol);
        await fill(c, '#fullname', 'Карина');
        await fill(c, '#regpass', 'Carol-pass1!');
        await press(c, '#registerdo');
        await c.waitForFunction(() => document.querySelector('#formerror').textContent !== '', { polling: 100, timeout: 30000 });
        assert.equal(await c.$eval('#formerror', (e) => e.textContent), 'Это имя пользователя занято. Выберите другое.');
        await screen(c, 'register-taken');
        await press(c, '#tologin2');
        await fill(c, '#loginname', carol);
        await fill(c, '#loginpass', 'Wrong-pass1!');
        await press(c, '#logindo');
        await c.waitForFunction(() => document.querySelector('#formerror').textContent !== '', { polling: 100, timeout: 30000 });
        assert.equal(await c.$eval('#formerror', (e) => e.textContent), 'Неверное имя пользователя или пароль.');
        await screen(c, 'login');
        await fill(c, '#loginpass', 'Carol-pass1!');
        await press(c, '#logindo');

        await c.waitForSelector('#keysetup', { timeout: 60000 });
        await screen(c, 'keysetup');
        await fastKey(c, '#acctkeytype');
        // A long passphrase without character classes is a good key passphrase.
        await fill(c, '#newpass', 'правильная лошадь батарейка скрепка');
        await press(c, '#generate');
        await c.waitForSelector('#keyready', { timeout: 180000 });
        await screen(c, 'keyready');
        await press(c, '#continue');
        await c.waitForSelector('#mainscreen');

        // Dave, in English, makes his account and key in another window.
        const d = await phonePage(b, relay.url, 'en');
        await press(d, '#toregister');
        await fill(d, '#regname', dave);
        await fill(d, '#fullname', 'Dave');
        await fill(d, '#regpass', 'Dave-pass1!');
        await press(d, '#registerdo');
        await d.waitForSelector('#loginscreen');
        await fill(d, '#loginpass', 'Dave-pass1!');
        await press(d, '#logindo');
        await makeKey(d, 'correct horse battery staple');
        await press(d, '#continue');
        await d.waitForSelector('#mainscreen');

        // Search: typing a whole name asks the relay once, shows a waiting state first and "not found" for nobody.
        const searches = () => relay.proxy.requests.filter((r) => r.url.startsWith('/api/users?')).length;
        const n0 = searches();
        const waiting = await c.$eval('#search', (el) => {
          el.value = 'nobody-here';
          el.dispatchEvent(new Event('input', { bubbles: true }));
          return document.querySelector('#searchstatus').textContent;
        });
        assert.equal(waiting, 'Ищем…');
        await c.waitForFunction(() => document.querySelector('#searchstatus').textContent === 'Пользователь не найден.', { polling: 100, timeout: 30000 });
        await screen(c, 'search-none');
        await c.$eval('#search', (el) => {
          el.value = '';
          el.focus();
        });
        await c.bringToFront();
        await c.keyboard.type(dave, { delay: 30 });
        await c.waitForSelector(`#results button[data-user="${dave}"]`, { timeout: 30000 });
        assert.ok(searches() - n0 <= 3, `typing asked the relay ${searches() - n0} times`);
        assert.equal(await c.$eval('#searchstatus', (e) => e.textContent), '');
        await screen(c, 'main');

        await press(c, `#results button[data-user="${dave}"]`);
        await c.waitForSelector('#room');
        await d.waitForFunction((u) => document.querySelector(`#dialogs button[data-user="${u}"]`), { polling: 100, timeout: 60000 }, carol);
        await press(d, `#dialogs button[data-user="${carol}"]`);
        await Promise.all([ready(c), ready(d)]);
        await screen(c, 'dialog');
        await press(c, '#verifybtn');
        await c.waitForSelector('dialog#verify[open]');
        await press(d, '#verifybtn');
        await d.waitForSelector('dialog#verify[open]');
        assert.equal(await qrText(c), await d.$eval('#safetycode', (e) => e.textContent));
        await screen(c, 'dialog-verify');
        await press(c, '#markverified');
        await press(c, '#verifyclose');
        await press(d, '#verifyclose');
        assert.equal(await c.$eval('#verified', (e) => e.hidden), false);
        assert.equal(await c.$eval('#verified', (e) => e.textContent), '✓ Проверен');
        await docShot(c, `${kind}-phone-dialog-ru`);

        // The mark is kept with the pin: leaving and coming back keeps it.
        await backToMain(c);
        await press(c, `#dialogs button[data-user="${dave}"]`);
        await ready(c);
        assert.equal(await c.$eval('#verified', (e) => e.hidden), false, 'the verified mark did not survive leaving the dialog');
        await backToMain(c);

        // Dave makes a new key pair; Carol is warned, trusts it, and the mark is gone.
        await backToMain(d);
        await press(d, '#mykey');
        await d.waitForSelector('dialog#mykeydialog[open]');
        await d.$eval('dialog#mykeydialog button.danger', (e) => e.click());
        await makeKey(d, 'another horse battery staple');
        await press(d, '#continue');
        await d.waitForSelector('#mainscreen');
        await press(c, `#dialogs button[data-user="${dave}"]`);
        await c.waitForSelector('dialog#keychange[open]', { timeout: 60000 });
        await screen(c, 'keychange');
        await press(c, '#kctrust');
        await c.waitForSelector('#room');
        await press(d, `#dialogs button[data-user="${carol}"]`);
        await Promise.all([ready(c), ready(d)]);
        assert.equal(await c.$eval('#verifybtn', (e) => e.hidden), false);
        assert.equal(await c.$eval('#verified', (e) => e.hidden), true, 'a changed key kept the verified mark');

        await backToMain(c);
        await press(c, '#mykey');
        await c.waitForSelector('dialog#mykeydialog[open]');
        await screen(c, 'mykey');
        await press(c, '#mykeyclose');

        // The unlock screen after a reload, with its Log out.
        await c.reload({ waitUntil: 'load' });
        await c.waitForSelector('#unlockscreen', { timeout: 60000 });
        assert.equal(await focused(c), 'unlockpass');
        await screen(c, 'unlock');
        await press(c, '#logout');
        await c.waitForSelector('#loginscreen');
        assert.deepEqual(c.errors.filter((e) => !/WebSocket|websocket|Failed to load resource/.test(e)), [], 'console errors');
        await c.close();
        await d.close();
      });

      await t.test('a relay shutting down ends the room with its own message', async () => {
        const r2 = await startRelay();
        try {
          const a = await phonePage(b, r2.url, 'ru');
          await fastKey(a, '#keytype');
          await press(a, '#create');
          await a.waitForSelector('#invitelink', { timeout: 120000 });
          r2.terminate();
          await a.waitForSelector('#ended', { timeout: 30000 });
          assert.equal(await a.$eval('#ended', (e) => e.dataset.reason), 'shutdown');
          assert.match(await a.$eval('#ended', (e) => e.textContent), /Сервер останавливается/);
          await screen(a, 'ended-shutdown');
          await a.close();
        } finally {
          await r2.stop();
        }
      });

      if (DOCS) {
        await t.test('screenshots for the README: desktop, English and Russian', async () => {
          const a = await openPage(b, relay.url);
          await a.setViewport(DESKTOP);
          await fastKey(a, '#keytype');
          await press(a, '#create');
          const invite = await a.waitForSelector('#invitelink', { timeout: 120000 }).then(() => a.$eval('#invitelink', (e) => e.value));
          const o = await openPage(b, invite);
          await o.setViewport(DESKTOP);
          await fastKey(o, '#keytype');
          await press(o, '#join');
          await Promise.all([ready(a), ready(o)]);
          for (const [p, m] of [[a, 'Hi! Compare the safety code with me: Verify.'], [o, 'Done, the codes match.']]) {
            await fill(p, '#text', m);
            await p.$eval('#composer', (f) => f.requestSubmit());
          }
          await a.waitForFunction(() => document.querySelectorAll('.msg').length >= 2, { polling: 100 });
          await docShot(a, `${kind}-desktop-room-en`);
          await press(o, '#verifybtn');
          await o.waitForSelector('dialog#verify[open]');
          if ((await lang(o)) !== 'ru') await o.$eval('#lang', (x) => x.click());
          await docShot(o, `${kind}-desktop-verify-ru`);
        });
      }
    } finally {
      await b.close();
      await relay.stop();
    }
  });
}
