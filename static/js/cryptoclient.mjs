// Module cryptoclient is the page's handle on the crypto worker: each call is a promise.
export class CryptoClient {
  constructor(url = new URL('./worker.mjs', import.meta.url)) {
    this.worker = new Worker(url, { type: 'module' });
    this.next = 1;
    this.waiting = new Map();
    this.worker.onmessage = (ev) => {
      const { id, ok, value, error } = ev.data;
      const w = this.waiting.get(id);
      if (!w) return;
      this.waiting.delete(id);
      if (ok) w.resolve(value);
      else w.reject(new Error(error));
    };
    this.worker.onerror = (ev) => {
      const err = new Error(`crypto worker failed: ${ev.message || 'could not start'}`);
      for (const w of this.waiting.values()) w.reject(err);
      this.waiting.clear();
    };
  }

  call(op, args = {}) {
    const id = this.next++;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      this.worker.postMessage({ id, op, args });
    });
  }

  terminate() {
    this.worker.terminate();
  }
}
