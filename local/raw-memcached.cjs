'use strict';
/**
 * The reference a Memcached hit of the service is measured against: one connection (plain TCP or
 * TLS) speaking the text protocol with nothing on top — no validation beyond framing, no timeout, no
 * routing. CommonJS, so that the benchmark's workers (plain node) can require it beside dist/index.js.
 *
 *   const raw = await connectRaw({ host: '127.0.0.1', port, tls: { ca, servername: 'localhost' } });
 *   await raw.set('k', 'v'.repeat(300), 60);
 *   const value = await raw.get('k'); // Buffer | null
 *   raw.close();
 *
 * For the benchmark only: the service's own adapter is lib/store/memcached-text.ts.
 */
const net = require('node:net');
const tls = require('node:tls');

/**
 * Opens a connection and resolves once it can carry requests (after the TLS handshake).
 * @param {{ host: string, port: number, tls?: { ca?: string | string[], servername?: string } | false }} options
 */
function connectRaw(options) {
  return new Promise((resolve, reject) => {
    const socket = options.tls
      ? tls.connect({ host: options.host, port: options.port, ...options.tls }, ready)
      : net.connect({ host: options.host, port: options.port }, ready);
    /** Waiting requests, oldest first: each consumes its reply from `buffer`. */
    const waiting = [];
    let buffer = Buffer.alloc(0);
    socket.on('error', (err) => {
      reject(err);
      for (const w of waiting.splice(0)) w.reject(err);
    });
    socket.on('data', (chunk) => {
      buffer = buffer.length === 0 ? chunk : Buffer.concat([buffer, chunk]);
      while (waiting.length > 0) {
        const consumed = waiting[0].parse(buffer);
        if (consumed === 0) break;
        buffer = buffer.subarray(consumed);
        waiting.shift();
      }
    });

    function request(command, parse) {
      return new Promise((resolveRequest, rejectRequest) => {
        waiting.push({
          parse: (data) => parse(data, resolveRequest),
          reject: rejectRequest,
        });
        socket.write(command);
      });
    }

    function ready() {
      resolve({
        /** The value of `key`, or null. */
        get(key) {
          return request(`get ${key}\r\n`, (data, done) => {
            const end = data.indexOf('\r\n');
            if (end < 0) return 0;
            const header = data.toString('latin1', 0, end);
            if (header === 'END') {
              done(null);
              return end + 2;
            }
            const bytes = Number(header.split(' ')[3]);
            const total = end + 2 + bytes + 2 + 5; // data, CRLF, "END\r\n"
            if (data.length < total) return 0;
            done(Buffer.from(data.subarray(end + 2, end + 2 + bytes)));
            return total;
          });
        },
        /** Stores `value` for `ttlSeconds`. */
        set(key, value, ttlSeconds) {
          const bytes = Buffer.from(value, 'utf8');
          const command = Buffer.concat([
            Buffer.from(`set ${key} 0 ${ttlSeconds} ${bytes.length}\r\n`),
            bytes,
            Buffer.from('\r\n'),
          ]);
          return request(command, (data, done) => {
            const end = data.indexOf('\r\n');
            if (end < 0) return 0;
            done(data.toString('latin1', 0, end));
            return end + 2;
          });
        },
        close() {
          socket.destroy();
        },
      });
    }
  });
}

module.exports = { connectRaw };
