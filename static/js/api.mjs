// Module api calls the relay's accounts and key-directory HTTP API (docs/accounts.md).

export class APIError extends Error {
  constructor(status, code, msg) {
    super(msg || code);
    this.status = status;
    this.code = code;
  }
}

// BUSY_TRIES is how often a request answered 503 with Retry-After (busy: the relay hashes as many passwords
// as it may, docs/accounts.md §4) is sent, waiting as asked between tries.
export const BUSY_TRIES = 4;

// call sends a request to /api/PATH; body, when given, goes as JSON. It resolves to the decoded
// answer (null for 204) and rejects with an APIError carrying the server's error code. sleep is injectable
// for tests.
export async function call(method, path, body, { sleep = (ms) => new Promise((r) => setTimeout(r, ms)) } = {}) {
  const init = { method, credentials: 'same-origin', headers: {} };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  for (let i = 1; ; i++) {
    try {
      res = await fetch(`/api/${path}`, init);
    } catch (e) {
      throw new APIError(0, 'network', `failed to reach the relay: ${e.message}`);
    }
    const wait = Number(res.headers.get('Retry-After'));
    if (res.status !== 503 || !(wait > 0) || i >= BUSY_TRIES) break;
    await sleep(wait * 1000);
  }
  if (res.status === 204) return null;
  let data = null;
  try {
    data = await res.json();
  } catch {
    data = null;
  }
  if (!res.ok) throw new APIError(res.status, data?.error || 'http_' + res.status, data?.msg || `HTTP ${res.status}`);
  return data;
}

export const register = (u) => call('POST', 'register', u);
export const login = (username, password) => call('POST', 'login', { username, password });
export const logout = () => call('POST', 'logout');
export const me = () => call('GET', 'me');
export const keyChallenge = () => call('POST', 'key/challenge');
export const publishKey = (key, challenge, signature) => call('PUT', 'key', { key, challenge, signature });
export const userKey = (name) => call('GET', `users/${encodeURIComponent(name)}/key`);
export const search = (prefix) => call('GET', `users?prefix=${encodeURIComponent(prefix)}&limit=20`);
export const openDialog = (name) => call('POST', `dialogs/${encodeURIComponent(name)}`);
export const sessionChallenge = () => call('POST', 'session/challenge');
export const sessionProof = (challenge, signature) => call('POST', 'session/proof', { challenge, signature });
