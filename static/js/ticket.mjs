// Module ticket keeps a logged-in session's WebSocket ticket (docs/accounts.md §7) so that the key signs a
// session challenge only when it must.
//
// The relay's ticket opens every socket of the login while one of them is open and for ticket_lifetime
// seconds after it was issued and after the last of them closed. A reconnect after a dropped Tor circuit
// then costs one round trip instead of three and no signature. The keeper cannot see the relay's answer to
// a refused handshake (browsers hide it), so a socket that closes without having opened makes the next
// socket prove the key again.

// TICKET_MARGIN_MS is how much sooner than the relay the keeper gives a ticket up: clocks and round trips.
export const TICKET_MARGIN_MS = 15000;

export class TicketKeeper {
  // prove obtains a new ticket (challenge, signature, proof) and resolves to the proof's JSON answer, which
  // holds ticket_lifetime in seconds. now is injectable for tests.
  constructor(prove, { now = Date.now } = {}) {
    this.prove = prove;
    this.now = now;
    this.gen = 0; // counts tickets (and forgets): a socket of an older one no longer counts
    this.open = 0; // sockets opened with the current ticket and still open
    this.until = 0; // while open is 0: the current ticket is good until then
    this.lifetime = 0;
  }

  good() {
    return this.open > 0 || this.now() < this.until;
  }

  // before is the beforeOpen of a connection: it makes sure a ticket is good, then returns the function the
  // caller hands its new WebSocket to, so that the keeper learns when it opens and closes.
  async before() {
    if (!this.good()) {
      const r = await this.prove();
      this.lifetime = Math.max(0, (Number(r?.ticket_lifetime) || 0) * 1000 - TICKET_MARGIN_MS);
      this.gen++;
      this.open = 0;
      this.until = this.now() + this.lifetime;
    }
    const gen = this.gen;
    return (ws) => {
      let opened = false;
      ws.addEventListener('open', () => {
        if (gen !== this.gen) return;
        opened = true;
        this.open++;
      });
      ws.addEventListener('close', () => {
        if (gen !== this.gen) return;
        if (!opened) {
          this.forget(); // refused, perhaps for the ticket: prove again next time
          return;
        }
        this.open--;
        if (this.open === 0) this.until = this.now() + this.lifetime;
      });
    };
  }

  // forget makes the next connection prove the key (logout, a new key, a refused handshake).
  forget() {
    this.gen++;
    this.open = 0;
    this.until = 0;
  }
}
