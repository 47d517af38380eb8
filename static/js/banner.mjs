// Module banner shows the relay connection (connstate.mjs) in a room's header, with the seconds to the next
// attempt, and says under the composer what will happen to what the user types now.
import { connState, view } from './connstate.mjs';
import { h, tx } from './ui.mjs';

// connBanner returns the header's element (#conn) and the composer's note (#composernote); both follow
// connState until stop() or until they leave the page.
export function connBanner() {
  const head = h('span.conn', { id: 'conn', role: 'status' });
  const note = h('p.composernote', { id: 'composernote', hidden: true });
  let tick = 0;
  let shown = false;
  const render = () => {
    if (head.isConnected) shown = true;
    else if (shown) {
      stop(); // the room screen is gone
      return;
    }
    const s = connState.get();
    const v = view(s, Date.now());
    head.dataset.phase = s.phase;
    head.replaceChildren(tx(v.key, v.vars));
    note.hidden = !v.composer;
    if (v.composer) note.replaceChildren(tx(v.composer));
    clearTimeout(tick);
    // A countdown is redrawn each second, on the second boundary of the next attempt.
    tick = v.vars.n ? setTimeout(render, ((s.nextAt - Date.now()) % 1000) || 1000) : 0;
  };
  const stop = () => {
    clearTimeout(tick);
    connState.removeEventListener('change', render);
  };
  connState.addEventListener('change', render);
  render();
  return { head, note, stop };
}
