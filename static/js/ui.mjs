// Module ui holds the page's small DOM helpers.
import { t } from './i18n.mjs';

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

export function show(screen) {
  const main = $('#main');
  main.replaceChildren(screen);
  const focus = screen.querySelector('[autofocus]');
  if (focus) focus.focus();
}

