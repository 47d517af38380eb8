// Module terminal runs the terminal client (`cleanrelay chat --json`, built once per test process) for the
// browser tests and reads its events.
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { repo, press } from './harness.mjs';

let bin = null;
function chatBinary() {
  if (!bin) {
    bin = join(mkdtempSync(join(tmpdir(), 'crchat-')), 'cleanrelay');
    execFileSync('go', ['build', '-o', bin, './cmd/cleanrelay'], { cwd: repo, stdio: 'inherit' });
  }
  return bin;
}

// Terminal runs `cleanrelay chat --json` and reads its events.
export class Terminal {
  // env is added to the environment (the account's password for --login, never a flag).
  constructor(args, dir, env = {}) {
    this.events = [];
    this.waiters = [];
    this.stderr = '';
    this.dir = dir;
    this.proc = spawn(chatBinary(), ['chat', '--json', '--save', dir, ...args], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, ...env } });
    this.proc.stderr.on('data', (d) => {
      this.stderr += d;
    });
    this.exited = new Promise((r) => this.proc.on('exit', (code) => r(code)));
    createInterface({ input: this.proc.stdout }).on('line', (l) => {
      const ev = JSON.parse(l);
      this.events.push(ev);
      for (const w of this.waiters) w();
    });
  }

  send(cmd) {
    this.proc.stdin.write(`${JSON.stringify(cmd)}\n`);
  }

  // wait returns the first event (from the start) that pred accepts; an error event fails the test.
  wait(pred, what, timeout = 60000) {
    return new Promise((resolve, reject) => {
      const check = () => {
        const bad = this.events.find((e) => e.type === 'error');
        if (bad) return reject(new Error(`terminal error: ${bad.message}`));
        const ev = this.events.find(pred);
        if (ev) {
          clearTimeout(timer);
          this.waiters = this.waiters.filter((w) => w !== check);
          resolve(ev);
        }
      };
      const timer = setTimeout(() => reject(new Error(`terminal: no ${what} in ${timeout} ms; stderr ${this.stderr}`)), timeout);
      this.waiters.push(check);
      check();
    });
  }

  stop() {
    if (this.proc.exitCode === null) this.proc.kill('SIGKILL');
  }
}

// safetyOf reads the safety code of the first peer from the page's keys dialog.
export async function safetyOf(page) {
  await press(page, '#e2e');
  await page.waitForSelector('dialog#keys[open]');
  const s = await page.$$eval('dialog#keys .key .safety', (l) => l.map((e) => e.textContent));
  await press(page, '#keysclose');
  return s[0];
}

// savedFile waits for the page's first received file and returns its bytes and the name it is saved under.
export async function savedFile(page) {
  await page.waitForSelector('a.save', { timeout: 180000 });
  const f = await page.$eval('a.save', async (a) => {
    const buf = new Uint8Array(await a.cleanrelayBlob.arrayBuffer());
    let s = '';
    for (const x of buf) s += String.fromCharCode(x);
    return { b64: btoa(s), name: a.getAttribute('download') };
  });
  return { data: Buffer.from(f.b64, 'base64'), name: f.name };
}
