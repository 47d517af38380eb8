// Module ui holds the page's small DOM helpers: building elements, translated and formatted text,
// screens with focus placed for keyboard and screen-reader users, and form fields with their own checks.
import { t, fmt } from './i18n.mjs';

export const $ = (sel) => document.querySelector(sel);

// h builds an element: h('p.note', {dataset:{i18n:'x'}}, 'text', child).
export function h(spec, props = {}, ...kids) {
  const [tag, ...classes] = spec.split('.');
  const el = document.createElement(tag || 'div');
  if (classes.length) el.className = classes.join(' ');
  for (const [k, v] of Object.entries(props)) {
    if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'i18n') {
      el.dataset.i18n = v;
      el.textContent = t(v);
    } else if (k === 'label') {
      // an accessible name that follows the language
      el.dataset.i18nLabel = v;
      el.setAttribute('aria-label', t(v));
    } else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) el.setAttribute(k, v === true ? '' : v);
  }
  for (const k of kids.flat()) if (k !== null && k !== undefined) el.append(k);
  return el;
}

export function tx(key, vars) {
  const el = h('span', { i18n: key });
  if (vars) {
    el.dataset.i18nVars = JSON.stringify(vars);
    el.textContent = t(key, vars);
  }
  return el;
}

// fx is a number shown through Intl (i18n.fmt): it is formatted again when the language changes.
export function fx(kind, value) {
  return h('span', { dataset: { fmt: kind, value: String(value) } }, fmt(kind, value));
}

// show replaces the screen and moves focus into it: to its [autofocus] control, else to its heading, so a
// screen reader announces where the user now is and Tab starts from there.
export function show(screen) {
  const main = $('#main');
  main.replaceChildren(screen);
  focusIn(screen);
}

export function focusIn(screen) {
  const target = screen.querySelector('[autofocus]:not([disabled])') || screen.querySelector('h2');
  if (!target) return;
  if (target.tagName === 'H2') target.setAttribute('tabindex', '-1');
  target.focus();
}

// field lays out a labelled control on its own line, with a hint and an error line tied to it
// (aria-describedby), so the page explains a bad value in its own words instead of a browser tooltip.
// control is the input or select, or a wrapper holding one (a secret field with its toggle).
export function field(key, control, { hint = null } = {}) {
  const input = control.matches('input, select, textarea') ? control : control.querySelector('input, select, textarea');
  const id = input.id;
  const hintEl = hint ? h('p.note', { id: `${id}-hint`, i18n: hint }) : null;
  input.setAttribute('aria-describedby', [hintEl ? `${id}-hint` : null, `${id}-error`].filter(Boolean).join(' '));
  return h('div.field', {}, h('label', { for: id }, tx(key)), control, hintEl, h('p.fielderror', { id: `${id}-error` }));
}

// fieldError shows (or, with an empty key, clears) the error of the field with id, and marks it invalid.
export function fieldError(id, message) {
  const input = document.getElementById(id);
  const err = document.getElementById(`${id}-error`);
  if (err) err.textContent = message || '';
  if (input) {
    if (message) input.setAttribute('aria-invalid', 'true');
    else input.removeAttribute('aria-invalid');
  }
  return !message;
}

// check runs checks over a form's fields: checks maps a field id to a function of its value that returns an
// error sentence or ''. It shows every error and focuses the first bad field; it returns whether all passed.
export function check(checks) {
  let first = null;
  for (const [id, fn] of Object.entries(checks)) {
    const el = document.getElementById(id);
    const why = fn(el?.value ?? '', el);
    fieldError(id, why);
    if (why && !first) first = el;
  }
  first?.focus();
  return !first;
}

// required is a check: the field may not be empty.
export const required = (v) => (String(v).trim() ? '' : t('required'));
