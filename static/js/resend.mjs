// Module resend lets a member reloaded into its seat get back the messages sealed in epochs whose keys died with
// the old page (docs/e2e.md §13): the reader lists them by place (epoch, number), their sender seals them again.

// SENT_LOG bounds the messages a sender keeps by place; RESEND_MAX bounds one request.
export const SENT_LOG = 256;
export const RESEND_MAX = 256;

export class Resend {
  constructor() {
    this.sent = new Map(); // "epoch.n" -> {header, body} of our message there
    this.unread = new Map(); // member -> [[epoch, n], …] we could not read
  }

  // keep records our message header/body sealed at place at ({epoch, n}); only chat and timer messages.
  keep(at, header, body) {
    if (!at || (header.k !== 'msg' && header.k !== 'timer')) return;
    this.sent.set(`${at.epoch}.${at.n}`, { header, body });
    if (this.sent.size > SENT_LOG) this.sent.delete(this.sent.keys().next().value);
  }

  // missed notes that member's message at (epoch, n) could not be read here.
  missed(member, epoch, n) {
    const want = this.unread.get(member) ?? [];
    if (want.length < RESEND_MAX) want.push([epoch, n]);
    this.unread.set(member, want);
  }

  // requests returns the resend messages to send now (one per sender) and forgets them: [{member, header}].
  requests(newId) {
    const out = [...this.unread].map(([member, want]) => ({ member, header: { k: 'resend', id: newId(), to: member, want } }));
    this.unread.clear();
    return out;
  }

  // answer returns what to seal again for resend message h, if it is addressed to member `self`.
  answer(self, h) {
    if (h.to !== self || !Array.isArray(h.want)) return null;
    const want = h.want.slice(0, RESEND_MAX);
    return { asked: want.length, again: want.map((w) => Array.isArray(w) && this.sent.get(`${w[0]}.${w[1]}`)).filter(Boolean) };
  }
}
