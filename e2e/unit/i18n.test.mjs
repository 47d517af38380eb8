// The English and Russian tables hold the same keys, each once, with the same placeholders; every key the
// client uses exists; every error code of the relay's protocol and accounts API has a sentence of its own.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { STRINGS, LANGS, hasKey, errorText, fmt } from '../../static/js/i18n.mjs';

const root = new URL('../../', import.meta.url);
const read = (p) => readFileSync(new URL(p, root), 'utf8');

// tableKeys reads the keys of each language table from the source, so a key written twice (which a JS
// object literal silently keeps once) is seen.
export function tableKeys(src) {
  const out = {};
  let cur = null;
  for (const line of src.split('\n')) {
    const open = line.match(/^ {2}(\w+): \{$/);
    if (open) {
      cur = open[1];
      out[cur] = [];
      continue;
    }
    if (cur && /^ {2}\},?$/.test(line)) {
      cur = null;
      continue;
    }
    const key = cur && line.match(/^ {4}(\w+):/);
    if (key) out[cur].push(key[1]);
  }
  return out;
}

const dupes = (keys) => keys.filter((k, i) => keys.indexOf(k) !== i);

test('both languages have the same keys', () => {
  assert.deepEqual(LANGS, ['en', 'ru']);
  const en = Object.keys(STRINGS.en).sort();
  const ru = Object.keys(STRINGS.ru).sort();
  assert.deepEqual(en.filter((k) => !ru.includes(k)), [], 'keys in English only');
  assert.deepEqual(ru.filter((k) => !en.includes(k)), [], 'keys in Russian only');
});

test('no key is defined twice in a table', () => {
  const tables = tableKeys(read('static/js/i18n.mjs'));
  assert.deepEqual(Object.keys(tables), LANGS, 'the source parser did not find the tables');
  for (const l of LANGS) {
    assert.equal(tables[l].length >= Object.keys(STRINGS[l]).length, true, `parser missed keys of ${l}`);
    assert.deepEqual(dupes(tables[l]), [], `keys defined twice in ${l}`);
  }
});

test('the duplicate finder sees a key written twice', () => {
  const t = tableKeys("const S = {\n  en: {\n    a: 'x',\n    back: 'y',\n    back: 'z',\n  },\n};\n");
  assert.deepEqual(dupes(t.en), ['back']);
});

test('placeholders match between languages', () => {
  const ph = (s) => [...s.matchAll(/\{(\w+)\}/g)].map((m) => m[1]).sort();
  for (const k of Object.keys(STRINGS.en)) assert.deepEqual(ph(STRINGS.ru[k] ?? ''), ph(STRINGS.en[k]), `placeholders of ${k}`);
});

test('every key the client names exists in both languages', () => {
  const used = new Set();
  for (const f of readdirSync(new URL('static/js/', root))) {
    if (!f.endsWith('.mjs') || f === 'i18n.mjs') continue;
    const src = read(`static/js/${f}`);
    for (const re of [/\bi18n: '(\w+)'/g, /\btx\('(\w+)'/g, /\bt\('(\w+)'/g, /'data-i18n-ph': '(\w+)'/g, /\blabel: '(\w+)'/g, /\bhint: '(\w+)'/g]) {
      for (const m of src.matchAll(re)) used.add(m[1]);
    }
  }
  assert.ok(used.size > 100, `only ${used.size} keys found: the scan is broken`);
  assert.deepEqual([...used].filter((k) => !hasKey(k)), []);
});

test('every error code of the protocol and the accounts API has its own sentence', () => {
  const codes = new Set();
  const proto = read('docs/protocol.md');
  const errs = proto.slice(proto.indexOf('### 4.3 Errors'), proto.indexOf('## 5.'));
  for (const m of errs.matchAll(/^\| `(\w+)` \|/gm)) codes.add(m[1]);
  const acct = read('docs/accounts.md');
  const table = acct.slice(acct.indexOf('## 9. Error codes'), acct.indexOf('## 10.'));
  for (const line of table.split('\n').filter((l) => /^\| \d{3} \|/.test(l))) {
    for (const m of line.split('|')[2].matchAll(/`(\w+)`/g)) codes.add(m[1]);
  }
  assert.ok(codes.size > 35, `only ${codes.size} codes found: the scan is broken`);
  for (const c of codes) {
    assert.ok(hasKey(`err_${c}`), `no err_${c}`);
    const e = Object.assign(new Error('the relay\'s own English text'), { code: c });
    assert.notEqual(errorText(e), e.message);
  }
  assert.match(errorText({ code: 'made_up', message: 'server text' }), /made_up/);
  assert.doesNotMatch(errorText({ code: 'made_up', message: 'server text' }), /server text/);
});

test('the closed reasons of the protocol each have their own sentence', () => {
  const proto = read('docs/protocol.md');
  const part = proto.slice(proto.indexOf('`closed` — the room ended'), proto.indexOf('`dialog` — for sessions'));
  const reasons = [...part.matchAll(/`(\w+)` \(/g)].map((m) => m[1]);
  assert.deepEqual(reasons, ['burned', 'expired', 'shutdown', 'revoked', 'moved']);
  for (const r of reasons) assert.ok(hasKey(`ended_${r}`), `no ended_${r}`);
  const texts = reasons.map((r) => STRINGS.en[`ended_${r}`]);
  assert.equal(new Set(texts).size, texts.length, 'two reasons share a sentence');
});

test('sizes, dates and durations go through Intl in each language', () => {
  assert.match(fmt('size', 262967, 'en'), /^256\.8 kB$/);
  assert.match(fmt('size', 262967, 'ru'), /^256,8 кБ$/);
  assert.match(fmt('size', 3 * 1048576, 'ru'), /^3 МБ$/);
  assert.match(fmt('dur', 300, 'ru'), /^5 минут$/);
  assert.match(fmt('dur', 10, 'en'), /^10 seconds$/);
  const d = Date.UTC(2026, 1, 12, 9, 33);
  assert.match(fmt('date', d, 'ru'), /февр\. 2026/);
  assert.match(fmt('date', d, 'en'), /Feb 12, 2026/);
});

test('a placeholder can hold a phrase that is translated with the rest', async () => {
  const { t } = await import('../../static/js/i18n.mjs');
  assert.equal(t('verify_who', { who: { t: 'member_n', n: 2 } }), 'Verify member 2');
  assert.equal(t('verify_who', { who: 'dave' }), 'Verify dave');
});
