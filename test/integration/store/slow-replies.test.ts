/**
 * Slow is not down: a reply that comes after its caller gave up is consumed, and the connection goes
 * on serving the next requests with their own replies. Real timeouts (a few hundred ms), hence here.
 */
import { type AddressInfo, createServer, type Socket } from 'node:net';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { TextMemcachedStore } from '../../../lib/store/memcached-text.ts';
import { failure } from '../../support/failure.ts';

const TIMEOUT_MS = 150;
let port: number;
const sockets = new Set<Socket>();
let connections = 0;
const server = createServer((socket) => {
  connections++;
  sockets.add(socket);
  socket.on('error', () => {});
  let buffer = '';
  let sending = Promise.resolve();
  socket.on('data', (chunk: Buffer) => {
    buffer += chunk.toString('latin1');
    for (let end = buffer.indexOf('\r\n'); end >= 0; end = buffer.indexOf('\r\n')) {
      const key = buffer.slice(0, end).split(' ')[1] as string;
      buffer = buffer.slice(end + 2);
      // `wts:slow…` keys are answered 3 timeouts late; replies keep their order, as memcached's do.
      const delayMs = key.startsWith('wts:slow') ? TIMEOUT_MS * 3 : 0;
      sending = sending.then(async () => {
        if (delayMs) await new Promise((resolve) => setTimeout(resolve, delayMs));
        socket.write(`VALUE ${key} 0 ${key.length}\r\n${key}\r\nEND\r\n`);
      });
    }
  });
});

beforeAll(async () => {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as AddressInfo).port;
});
afterAll(async () => {
  for (const s of sockets) s.destroy();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

it('gives up on a slow reply within its timeout, then serves later calls their own values on the same connection', async () => {
  const store = new TextMemcachedStore({
    node: { host: '127.0.0.1', port, ip: null },
    tls: false,
    timeoutMs: TIMEOUT_MS,
  });
  expect(await store.get('wts:warm')).toBe('wts:warm');
  const started = performance.now();
  const err = await failure(store.get('wts:slow-1'));
  expect(performance.now() - started).toBeLessThan(TIMEOUT_MS + 300);
  expect(err.message).toBe(`Memcached get failed: no answer within ${TIMEOUT_MS} ms`);
  // Queued behind the slow reply (memcached answers in order): they wait past their own timeout too.
  for (const e of await Promise.all([failure(store.get('wts:after-1')), failure(store.get('wts:after-2'))])) {
    expect(e.message).toMatch(/no answer within/);
  }
  await new Promise((resolve) => setTimeout(resolve, TIMEOUT_MS * 3));
  // The late replies were consumed in order: this call gets its own value, not one of theirs.
  expect(await store.get('wts:later')).toBe('wts:later');
  expect(connections).toBe(1);
  await store.close();
});
