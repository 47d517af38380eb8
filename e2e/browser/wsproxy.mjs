// A recording WebSocket/HTTP proxy between the browsers and the relay, for tests only.
//
// It forwards HTTP requests and WebSocket connections to the relay on 127.0.0.1, records every
// WebSocket message in both directions (so tests can assert what the relay saw and forwarded),
// can hold relay → browser traffic of one connection (to build a backlog), and can rewrite
// relay → browser binary frames (to play a malicious relay).
import http from 'node:http';
import net from 'node:net';

// parseFrames consumes complete WebSocket frames from buf; returns {frames, rest}.
export function parseFrames(buf) {
  const frames = [];
  let p = 0;
  for (;;) {
    if (buf.length - p < 2) break;
    const b0 = buf[p];
    const b1 = buf[p + 1];
    let len = b1 & 0x7f;
    let off = 2;
    if (len === 126) {
      if (buf.length - p < 4) break;
      len = buf.readUInt16BE(p + 2);
      off = 4;
    } else if (len === 127) {
      if (buf.length - p < 10) break;
      len = Number(buf.readBigUInt64BE(p + 2));
      off = 10;
    }
    const masked = (b1 & 0x80) !== 0;
    const maskOff = off;
    if (masked) off += 4;
    if (buf.length - p < off + len) break;
    let payload = Buffer.from(buf.subarray(p + off, p + off + len));
    if (masked) {
      const mask = buf.subarray(p + maskOff, p + maskOff + 4);
      for (let i = 0; i < payload.length; i++) payload[i] ^= mask[i & 3];
    }
    frames.push({ fin: (b0 & 0x80) !== 0, opcode: b0 & 0x0f, payload, raw: Buffer.from(buf.subarray(p, p + off + len)) });
    p += off + len;
  }
  return { frames, rest: buf.subarray(p) };
}

// encodeFrame writes an unmasked (server → client) frame.
export function encodeFrame(opcode, payload, fin = true) {
  const n = payload.length;
  let head;
  if (n < 126) head = Buffer.from([(fin ? 0x80 : 0) | opcode, n]);
  else if (n < 65536) {
    head = Buffer.alloc(4);
    head[0] = (fin ? 0x80 : 0) | opcode;
    head[1] = 126;
    head.writeUInt16BE(n, 2);
  } else {
    head = Buffer.alloc(10);
    head[0] = (fin ? 0x80 : 0) | opcode;
    head[1] = 127;
    head.writeBigUInt64BE(BigInt(n), 2);
  }
  return Buffer.concat([head, payload]);
}

export class RecordingProxy {
  constructor() {
    this.target = 0;
    this.conns = [];
    this.httpTamper = null; // (req) => null | (bodyText) => newBodyText
    this.requests = []; // every HTTP request forwarded: {method, url}
    this.server = http.createServer((req, res) => this.forwardHTTP(req, res));
    this.server.on('upgrade', (req, sock, head) => this.forwardWS(req, sock, head));
  }

  listen() {
    return new Promise((resolve) => this.server.listen(0, '127.0.0.1', () => {
      this.port = this.server.address().port;
      resolve(this.port);
    }));
  }

  forwardHTTP(req, res) {
    this.requests.push({ method: req.method, url: req.url });
    const up = http.request({ host: '127.0.0.1', port: this.target, method: req.method, path: req.url, headers: req.headers }, (ur) => {
      const tamper = this.httpTamper && this.httpTamper(req);
      if (!tamper) {
        res.writeHead(ur.statusCode, ur.headers);
        ur.pipe(res);
        return;
      }
      // Play a malicious relay: rewrite this answer's body.
      const parts = [];
      ur.on('data', (d) => parts.push(d));
      ur.on('end', () => {
        const body = Buffer.from(tamper(Buffer.concat(parts).toString()));
        const headers = { ...ur.headers, 'content-length': String(body.length) };
        delete headers['transfer-encoding'];
        res.writeHead(ur.statusCode, headers);
        res.end(body);
      });
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  }

  forwardWS(req, client, head) {
    const upstream = net.connect(this.target, '127.0.0.1');
    const conn = { index: this.conns.length, url: req.url, cookie: req.headers.cookie ?? '', messages: [], held: false, heldFrames: [], tamper: null, client, upstream, first: null };
    this.conns.push(conn);
    let lines = `${req.method} ${req.url} HTTP/1.1\r\n`;
    for (let i = 0; i < req.rawHeaders.length; i += 2) lines += `${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}\r\n`;
    upstream.write(lines + '\r\n');
    if (head.length) upstream.write(head);
    // Browser → relay: forward bytes as they are; parse a copy for the record.
    let cbuf = Buffer.alloc(0);
    client.on('data', (d) => {
      upstream.write(d);
      cbuf = Buffer.concat([cbuf, d]);
      const { frames, rest } = parseFrames(cbuf);
      cbuf = Buffer.from(rest);
      for (const f of frames) this.record(conn, 'up', f);
    });
    // Relay → browser: pass the HTTP response head through, then parse frames and re-encode them,
    // so that they can be held or rewritten.
    let sbuf = Buffer.alloc(0);
    let headerDone = false;
    upstream.on('data', (d) => {
      sbuf = Buffer.concat([sbuf, d]);
      if (!headerDone) {
        const end = sbuf.indexOf('\r\n\r\n');
        if (end < 0) return;
        client.write(sbuf.subarray(0, end + 4));
        sbuf = Buffer.from(sbuf.subarray(end + 4));
        headerDone = true;
      }
      const { frames, rest } = parseFrames(sbuf);
      sbuf = Buffer.from(rest);
      for (const f of frames) {
        this.record(conn, 'down', f);
        let out = f.raw;
        if (f.opcode === 2 && conn.tamper) {
          const np = conn.tamper(f.payload);
          if (np) out = encodeFrame(2, np, f.fin);
        }
        if (conn.held) conn.heldFrames.push(out);
        else client.write(out);
      }
    });
    const close = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', close);
    upstream.on('error', close);
    client.on('close', close);
    upstream.on('close', close);
  }

  record(conn, dir, f) {
    const m = { dir, opcode: f.opcode, payload: f.payload, at: Date.now() };
    conn.messages.push(m);
    if (dir === 'up' && f.opcode === 1 && !conn.first) {
      try {
        conn.first = JSON.parse(f.payload.toString()).t;
      } catch {
        conn.first = '?';
      }
    }
  }

  hold(conn) {
    conn.held = true;
  }

  release(conn) {
    conn.held = false;
    const all = Buffer.concat(conn.heldFrames);
    conn.heldFrames = [];
    conn.client.write(all);
  }

  // drop cuts one connection at the TCP level, as a network failure would.
  drop(conn) {
    conn.client.destroy();
    conn.upstream.destroy();
  }

  allMessages() {
    return this.conns.flatMap((c) => c.messages.map((m) => ({ ...m, conn: c.index })));
  }

  close() {
    for (const c of this.conns) {
      c.client.destroy();
      c.upstream.destroy();
    }
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}
