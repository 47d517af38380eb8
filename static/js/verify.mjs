// Module verify shows the Verify screen of one peer: both fingerprints, the safety code in groups and as a
// QR code (SVG, never a canvas), and the "mark as verified" switch.
import qrcode from '../vendor/qrcode.mjs';
import { t } from './i18n.mjs';
import { $, h, tx } from './ui.mjs';

const SVG = 'http://www.w3.org/2000/svg';

// qrSVG draws text as a QR code: one <path> of dark modules on a white square with the standard
// four-module quiet zone. Error correction M; the version grows with the text.
export function qrSVG(text, label) {
  const q = qrcode(0, 'M');
  q.addData(text, 'Byte');
  q.make();
  const n = q.getModuleCount();
  const size = n + 8;
  let d = '';
  for (let r = 0; r < n; r++) {
    for (let c = 0; c < n; c++) if (q.isDark(r, c)) d += `M${c + 4} ${r + 4}h1v1h-1z`;
  }
  const svg = document.createElementNS(SVG, 'svg');
  for (const [k, v] of Object.entries({ viewBox: `0 0 ${size} ${size}`, role: 'img', 'shape-rendering': 'crispEdges', class: 'qr' })) svg.setAttribute(k, v);
  const title = document.createElementNS(SVG, 'title');
  title.textContent = label;
  const bg = document.createElementNS(SVG, 'rect');
  for (const [k, v] of Object.entries({ width: size, height: size, fill: '#fff' })) bg.setAttribute(k, v);
  const dark = document.createElementNS(SVG, 'path');
  dark.setAttribute('d', d);
  dark.setAttribute('fill', '#000');
  svg.append(title, bg, dark);
  return svg;
}

// groups splits a safety code into its groups of digits, whatever spacing it came with.
export function groups(code) {
  return String(code).trim().split(/\s+/).filter(Boolean);
}

// verifyDialog opens the Verify screen. who names the peer (a name, or an i18n phrase {t, ...vars});
// peer is {fingerprint, safety};
// ownFp is this side's fingerprint; verified says whether the peer's current key is marked; onMark(bool)
// records the user's decision.
export function verifyDialog({ who, peer, ownFp, verified, onMark }) {
  $('#verify')?.remove();
  const state = h('p.verifystate', { id: 'verifystate', role: 'status' });
  const mark = h('button.primary', { type: 'button', id: 'markverified' });
  const render = (on) => {
    state.replaceChildren(on ? tx('verified_who', { who }) : tx('not_verified'));
    state.classList.toggle('ok', on);
    mark.dataset.i18n = on ? 'unmark_verified' : 'mark_verified';
    mark.textContent = t(mark.dataset.i18n);
    mark.setAttribute('aria-pressed', String(on));
    mark.className = on ? '' : 'primary';
  };
  let on = verified;
  mark.addEventListener('click', () => {
    on = !on;
    onMark(on);
    render(on);
  });
  render(on);
  const code = groups(peer.safety);
  const d = h('dialog.verify', { id: 'verify', 'aria-labelledby': 'verifytitle' },
    h('h2', { id: 'verifytitle', tabindex: '-1' }, tx('verify_who', { who })),
    h('p', {}, tx('verify_text', { who })),
    h('h3', { i18n: 'safety' }),
    h('p.safety.groups', { id: 'safetycode', dataset: { code: code.join(' ') } }, ...code.flatMap((g, i) => (i ? [' ', h('span.group', {}, g)] : [h('span.group', {}, g)]))),
    h('figure.qrbox', { id: 'qr' }, qrSVG(code.join(' '), t('qr_label'))),
    h('dl.fps', {},
      h('dt', { i18n: 'your_fp' }), h('dd.fp', { id: 'verifyownfp' }, ownFp),
      h('dt', {}, tx('their_fp', { who })), h('dd.fp', { id: 'verifypeerfp' }, peer.fingerprint)),
    state,
    h('div.row', {},
      mark,
      h('button', { type: 'button', id: 'verifyclose', i18n: 'close', autofocus: true, onclick: () => d.close() })));
  document.body.append(d);
  d.showModal();
  return d;
}
