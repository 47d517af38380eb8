// Test harness: a real relay (built from this repository), the recording proxy in front of it,
// and Debian's Chromium and Firefox ESR driven by puppeteer-core.
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import puppeteer from 'puppeteer-core';
import { RecordingProxy } from './wsproxy.mjs';
import { DELIVER_HEADER, SEND_HEADER, PADDED, decodePayload } from '../../static/js/proto.mjs';
import { FRAME_BUCKETS } from '../../static/js/pad.mjs';

export const repo = new URL('../../', import.meta.url).pathname;
export const artifacts = join(repo, 'test-artifacts');
mkdirSync(artifacts, { recursive: true });

let built = null;

function buildRelay() {
  if (built) return built;
  const dir = mkdtempSync(join(tmpdir(), 'crbin-'));
  built = join(dir, 'cleanrelay');
  execFileSync('go', ['build', '-o', built, './cmd/cleanrelay'], { cwd: repo, stdio: 'inherit' });
  return built;
}

// spawnRelay starts `cleanrelay serve --local-only` with args and resolves to the process, its URL and its log.
async function spawnRelay(args) {
  const proc = spawn(buildRelay(), ['serve', '--local-only', '--listen', '127.0.0.1:0', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const r = { proc, log: '' };
  proc.stderr.on('data', (d) => {
    r.log += d;
  });
  r.url = await new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`relay did not start: ${out} ${r.log}`)), 20000);
    proc.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/cleanrelay: serving on (http:\/\/127\.0\.0\.1:(\d+)\/)/);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    proc.on('exit', (code) => reject(new Error(`relay exited with ${code}: ${r.log}`)));
  });
  return r;
}

// killRelay stops a relay process (SIGTERM, then SIGKILL after 3 s) and resolves once it has exited.
async function killRelay(proc) {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise((r) => proc.on('exit', r));
  proc.kill('SIGTERM');
  const t = setTimeout(() => proc.kill('SIGKILL'), 3000);
  await exited;
  clearTimeout(t);
}

// startRelay starts `cleanrelay serve --local-only` behind a recording proxy. The browsers talk
// to the proxy's origin, which the relay admits with --allow-host.
// args are more flags for `serve` (say, a short --grace).
export async function startRelay({ extraHosts = [], args = [] } = {}) {
  const proxy = new RecordingProxy();
  const pport = await proxy.listen();
  const hosts = [`127.0.0.1:${pport}`, ...extraHosts.map((h) => `${h}:${pport}`)].flatMap((h) => ['--allow-host', h]);
  let cur = await spawnRelay([...hosts, ...args]);
  proxy.target = Number(new URL(cur.url).port);
  return {
    proxy,
    get relayURL() {
      return cur.url;
    },
    url: `http://127.0.0.1:${pport}/`,
    port: pport,
    log: () => cur.log,
    // terminate asks the relay to shut down (SIGTERM) with the proxy still up, so clients hear its goodbye.
    terminate: () => cur.proc.kill('SIGTERM'),
    // crash kills the relay (SIGKILL: no goodbye to anyone) and leaves the proxy up: the page's origin stays,
    // and nothing answers behind it.
    async crash() {
      const exited = new Promise((r) => cur.proc.on('exit', r));
      cur.proc.kill('SIGKILL');
      await exited;
    },
    // resume starts a new relay process (which knows nothing of the old one) behind the same proxy.
    async resume() {
      await killRelay(cur.proc);
      cur = await spawnRelay([...hosts, ...args]);
      proxy.target = Number(new URL(cur.url).port);
    },
    async stop() {
      await proxy.close();
      await killRelay(cur.proc);
    },
  };
}

// Tor-Browser-"Safer"-like preferences: no JIT, no WebAssembly, no asm.js; private browsing.
export const SAFER_PREFS = {
  'javascript.options.ion': false,
  'javascript.options.baselinejit': false,
  'javascript.options.native_regexp': false,
  'javascript.options.wasm': false,
  'javascript.options.asmjs': false,
  'browser.privatebrowsing.autostart': true,
  'media.peerconnection.enabled': false,
  'network.dns.disablePrefetch': true,
  'network.prefetch-next': false,
  'browser.download.useDownloadDir': true,
  'browser.download.folderList': 2,
};

export async function launch(kind, { args = [], prefs = {} } = {}) {
  const profile = mkdtempSync(join(tmpdir(), `cr-${kind}-`));
  let browser;
  if (kind === 'firefox') {
    browser = await puppeteer.launch({
      browser: 'firefox',
      executablePath: '/usr/bin/firefox-esr',
      headless: true,
      userDataDir: profile,
      extraPrefsFirefox: { ...SAFER_PREFS, 'browser.download.dir': profile, ...prefs },
      protocolTimeout: 120000,
    });
  } else {
    browser = await puppeteer.launch({
      browser: 'chrome',
      executablePath: '/usr/bin/chromium',
      headless: true,
      userDataDir: profile,
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
        '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage', ...args],
      protocolTimeout: 120000,
    });
  }
  return {
    browser,
    kind,
    profile,
    async close() {
      await browser.close().catch(() => {});
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

// openPage opens url in a fresh, isolated browser context and collects console errors.
export async function openPage(b, url) {
  const ctx = await b.browser.createBrowserContext();
  const page = await ctx.newPage();
  page.errors = [];
  page.on('console', (m) => {
    if (m.type() === 'error') page.errors.push(m.text());
  });
  page.on('pageerror', (e) => page.errors.push(String(e)));
  page.on('dialog', (d) => d.accept());
  await page.setViewport({ width: 1000, height: 900 });
  await page.goto(url, { waitUntil: 'load' });
  await page.waitForSelector('body[data-ready="yes"], #refused', { timeout: 60000 });
  return page;
}

export async function shot(page, name) {
  const p = join(artifacts, `${name}.png`);
  await page.screenshot({ path: p });
  return p;
}


// The page actions every browser test uses. WebDriver BiDi's click() slows down with every call in Firefox and
// synthetic Enter presses race with the focus moves of modal dialogs, so buttons are activated with the DOM's
// click(); the chat itself is typed and sent from the keyboard. timeout is in ms (longer through Tor).

export async function press(page, sel, { timeout = 60000 } = {}) {
  await page.waitForSelector(sel, { timeout });
  await page.$eval(sel, (el) => el.click());
}

// fill sets a field's value as typing would, input event included.
export async function fill(page, sel, value, { timeout = 60000 } = {}) {
  await page.waitForSelector(sel, { timeout });
  await page.$eval(sel, (el, v) => {
    el.value = v;
    el.dispatchEvent(new Event('input', { bubbles: true }));
  }, value);
}

// say sends text from the message box with Enter and waits until it shows as sent.
export async function say(page, text, { timeout = 60000 } = {}) {
  await page.waitForSelector('#text:not([disabled])', { timeout });
  const before = await page.$$eval('.msg.mine', (l) => l.length);
  await fill(page, '#text', text, { timeout });
  await page.focus('#text');
  await page.keyboard.press('Enter');
  await page.waitForFunction((n) => document.querySelectorAll('.msg.mine').length > n, { timeout, polling: 100 }, before);
}

// receiptsSettled waits until every message each page sent shows as delivered: then no receipt (docs/e2e.md
// §7.4) is on its way, and the next message frame is a message of the user's.
export async function receiptsSettled(...pages) {
  for (const p of pages) {
    await p.waitForFunction(() => [...document.querySelectorAll('#log .msg.mine')].every((e) => e.dataset.state === 'delivered'), { timeout: 60000, polling: 100 });
  }
}

// sees waits for a received message with exactly text, and fails if any message is marked unverified.
export async function sees(page, text, { timeout = 60000 } = {}) {
  await page.waitForFunction((v) => [...document.querySelectorAll('.msg.theirs .text')].some((e) => e.textContent === v),
    { timeout, polling: 100 }, text);
  assert.equal(await page.$$eval('.msg.unverified', (l) => l.length), 0, 'a message is marked unverified');
}

// exportLinkBytes returns the bytes of the Blob behind the export link (the CSP forbids fetching blob: URLs).
async function exportLinkBytes(page) {
  await page.waitForSelector('#exportlink', { timeout: 60000 });
  const b64 = await page.$eval('#exportlink', async (a) => {
    const buf = new Uint8Array(await a.cleanrelayBlob.arrayBuffer());
    let s = '';
    for (const x of buf) s += String.fromCharCode(x);
    return btoa(s);
  });
  return Buffer.from(b64, 'base64');
}

// exportKey exports the room tab's key pair from the key dialog as ZIP bytes.
export async function exportKey(page, passphrase) {
  await press(page, '#e2e');
  await page.waitForSelector('dialog#keys[open]');
  await page.$eval('#exportpass', (el, v) => {
    el.value = v;
  }, passphrase);
  await press(page, '#exportdo');
  const bytes = await exportLinkBytes(page);
  await press(page, '#keysclose');
  return new Uint8Array(bytes);
}

// exportZip exports the account's key pair from the key-ready screen (or the My key dialog) as ZIP bytes.
export async function exportZip(page, passphrase) {
  await fill(page, '#exportpass', passphrase);
  await press(page, '#exportdo');
  return exportLinkBytes(page);
}

// backlog holds the proxy's delivery on conn (the receiver's socket) while sender sends n chat messages,
// then releases it and waits until receiver has read them all. It returns the client's timing records of
// those sends and receives (globalThis.cleanrelayStats).
export async function backlog(proxy, conn, sender, receiver, n = 100) {
  const sendBefore = await sender.evaluate(() => globalThis.cleanrelayStats.send.length);
  const recvBefore = await receiver.evaluate(() => globalThis.cleanrelayStats.recv.length);
  proxy.hold(conn);
  for (let i = 0; i < n; i++) {
    await sender.$eval('#text', (el, v) => {
      el.value = v;
    }, `backlog message ${i}`);
    await sender.focus('#text');
    await sender.keyboard.press('Enter');
    await sender.waitForFunction((k) => globalThis.cleanrelayStats.send.length > k, { timeout: 60000, polling: 50 }, sendBefore + i);
  }
  proxy.release(conn);
  await receiver.waitForFunction((k) => globalThis.cleanrelayStats.recv.length >= k, { timeout: 120000, polling: 50 }, recvBefore + n);
  return {
    sent: await sender.evaluate((k) => globalThis.cleanrelayStats.send.slice(k), sendBefore),
    received: await receiver.evaluate((k) => globalThis.cleanrelayStats.recv.slice(k), recvBefore),
  };
}

// frames returns every binary WebSocket message the proxy recorded as {conn, dir, at, payload, kind}: payload
// is the frame payload after the relay's deliver header (down) or the client's send header (up), kind the
// payload kind inside it (null when it does not decode).
export function frames(proxy) {
  return proxy.allMessages().filter((m) => m.opcode === 2).map((m) => {
    const payload = m.payload.subarray(m.dir === 'down' ? DELIVER_HEADER : SEND_HEADER);
    let kind = null;
    try {
      kind = decodePayload(new Uint8Array(payload)).kind;
    } catch {
      /* checked by assertCleanWire */
    }
    return { conn: m.conn, dir: m.dir, at: m.at, payload, kind };
  });
}

// assertCleanWire checks everything the relay saw and sent through the proxy: every frame payload has one of
// the frame bucket sizes and is a well-formed padded payload, and no WebSocket message (text or binary)
// contains any of needles (strings or byte arrays). It returns how many frames of each size went each way.
export function assertCleanWire(proxy, needles) {
  const bufs = needles.map((n) => Buffer.from(n));
  for (const b of bufs) assert.ok(b.length >= 8, `needle "${b}" is too short to mean anything`);
  for (const m of proxy.allMessages()) {
    for (const b of bufs) assert.ok(!m.payload.includes(b), `plaintext "${b.toString().slice(0, 40)}" in a message the relay saw (${m.dir}, opcode ${m.opcode})`);
  }
  const sizes = { up: {}, down: {} };
  for (const f of frames(proxy)) {
    assert.ok(FRAME_BUCKETS.includes(f.payload.length), `a ${f.dir} frame payload of ${f.payload.length} bytes is not on a frame bucket`);
    assert.equal(f.payload[0], PADDED, `a ${f.dir} frame payload is not padded`);
    assert.notEqual(f.kind, null, `a ${f.dir} frame payload does not decode`);
    sizes[f.dir][f.payload.length] = (sizes[f.dir][f.payload.length] || 0) + 1;
  }
  return sizes;
}
