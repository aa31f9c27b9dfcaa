/**
 * MemcachedStore over real sockets to servers that cannot answer, and over a memjs stand-in. Time is
 * faked (setTimeout, setImmediate, performance.now): a call's time bound is checked by moving the
 * clock, never by waiting; connections and refusals are real I/O on loopback.
 */
import { type AddressInfo, createServer, type Server, type Socket } from 'node:net';
import { setImmediate as ioTurn } from 'node:timers/promises';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { ServiceError } from '../../../lib/errors.ts';
import { MemcachedStore, type MemjsLike } from '../../../lib/store/memcached.ts';
import { failure } from '../../support/failure.ts';

const TIMEOUT_MS = 60;
/** The retry on a fresh connection gets at least 1 s (call-guard.ts). */
const RETRY_MS = 1000;

beforeEach(() => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setImmediate', 'performance'] });
});
afterEach(() => {
  vi.useRealTimers();
});

/** Settles `call` into its error or `'pending'`, without moving the clock. */
function track(call: Promise<unknown>): () => ServiceError | 'pending' {
  let outcome: ServiceError | 'pending' = 'pending';
  failure(call).then((err) => {
    outcome = err;
  });
  return () => outcome;
}

/** Lets `ms` of fake time pass, then the guard's extra loop turn (a fake setImmediate). */
async function elapse(ms: number): Promise<void> {
  await vi.advanceTimersByTimeAsync(ms);
  await vi.advanceTimersByTimeAsync(1);
}

async function listen(server: Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

/** A port nothing listens on: bound once by the OS, then released. */
async function closedPort(): Promise<number> {
  const server = createServer();
  const port = await listen(server);
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

const stores: MemcachedStore[] = [];
afterEach(async () => {
  await Promise.all(stores.splice(0).map((s) => s.close()));
});

function store(servers: string[], failFastMs?: number): MemcachedStore {
  const s = new MemcachedStore({ servers, timeoutMs: TIMEOUT_MS, onDiagnostic: () => {}, failFastMs });
  stores.push(s);
  return s;
}

describe('MemcachedStore when memcached cannot answer', () => {
  it.each([
    ['get', (s: MemcachedStore) => s.get('wts:v1:k')],
    ['set', (s: MemcachedStore) => s.set('wts:v1:k', 'v', 60)],
    ['add', (s: MemcachedStore) => s.add('wts:v1:k', 'v', 60)],
    ['delete', (s: MemcachedStore) => s.delete('wts:v1:k')],
    ['increment', (s: MemcachedStore) => s.increment('wts:v1:k', 60)],
  ])(
    'fails %s with cache_unavailable at once, without waiting for its timeout, when the port is closed',
    async (op, run) => {
      const s = store([`127.0.0.1:${await closedPort()}`]);
      // The clock does not move: a refused connection must fail the call by itself (were it to wait for
      // its timeout, this test would time out instead).
      const err = await failure(run(s));
      expect(err.code).toBe('cache_unavailable');
      expect(err.status).toBe(503);
      expect(err.message).toContain(op);
      expect(err.message).toMatch(/failed twice/);
      // Nothing is left armed for the timeout it did not need.
      expect(vi.getTimerCount()).toBe(0);
    },
  );

  it('leaves no socket behind after close, so the process can exit', async () => {
    const before = process.getActiveResourcesInfo().filter((r) => r === 'TCPSocketWrap').length;
    const s = store([`127.0.0.1:${await closedPort()}`]);
    expect((await failure(s.get('wts:v1:k'))).code).toBe('cache_unavailable');
    expect((await failure(s.get('wts:v1:k'))).code).toBe('cache_unavailable');
    await s.close();
    await ioTurn();
    const after = process.getActiveResourcesInfo().filter((r) => r === 'TCPSocketWrap').length;
    expect(after).toBeLessThanOrEqual(before);
  });

  it('fails every request to a server that accepts but never answers within the bound, and close drops the connections', async () => {
    const accepted = new Set<Socket>();
    // allowHalfOpen: like a frozen memcached, the server never closes its side of a connection, so a
    // client socket that memjs only end()s stays open and keeps the process alive.
    let onAccept: () => void = () => {};
    const frozen = createServer({ allowHalfOpen: true }, (socket) => {
      accepted.add(socket);
      onAccept();
    });
    const firstAccept = new Promise<void>((resolve) => (onAccept = resolve));
    const port = await listen(frozen);
    const tcpSockets = () => process.getActiveResourcesInfo().filter((r) => r === 'TCPSocketWrap').length;
    const before = tcpSockets();
    try {
      // No fail-fast window, so every call really goes to the frozen server.
      const s = store([`127.0.0.1:${port}`], 0);
      // The first request times out; the ones right after it run into memjs's own state after a
      // timeout (it can orphan a connection and lose the request): each must still fail, in bounded
      // time — at most an attempt of TIMEOUT_MS and a retry of RETRY_MS on a fresh connection.
      for (let i = 0; i < 3; i++) {
        const outcome = track(s.get('wts:v1:k'));
        // Time starts once the server holds the connection: nothing but the timeout can end the call.
        if (i === 0) await firstAccept;
        await elapse(TIMEOUT_MS - 5);
        expect(outcome()).toBe('pending');
        await elapse(RETRY_MS + 10);
        expect(outcome()).toMatchObject({ code: 'cache_unavailable' });
      }
      expect(accepted.size).toBeGreaterThan(0);
      await s.close();
      await ioTurn();
      // Only the server's own ends of the connections remain in this process.
      expect(tcpSockets()).toBeLessThanOrEqual(before + accepted.size);
    } finally {
      for (const socket of accepted) socket.destroy();
      await new Promise<void>((resolve) => frozen.close(() => resolve()));
    }
  });
});

/** A memjs stand-in that records calls and answers what the test says. */
function fakeMemjs(overrides: Partial<MemjsLike> = {}) {
  const calls: { op: string; args: unknown[] }[] = [];
  let closed = 0;
  const record =
    <T>(op: string, answer: T) =>
    async (...args: unknown[]) => {
      calls.push({ op, args });
      return answer;
    };
  const client: MemjsLike = {
    get: record('get', { value: null }),
    set: record('set', true),
    add: record('add', true),
    delete: record('delete', true),
    increment: record('increment', { success: true, value: 1 }),
    close: () => {
      closed++;
    },
    perform: () => {
      calls.push({ op: 'perform', args: [] });
    },
    incrSeq: () => {},
    seq: 0,
    ...overrides,
  };
  return { client, calls, closedCount: () => closed };
}

describe('MemcachedStore over the memjs calls it uses', () => {
  it('passes TTLs to memjs as relative seconds and counters as starting at 1', async () => {
    const fake = fakeMemjs();
    const s = new MemcachedStore({ servers: [], timeoutMs: TIMEOUT_MS }, fake.client);
    await s.set('k1', 'v1', 30);
    await s.add('k2', 'v2', 40);
    await s.increment('k3', 50);
    expect(fake.calls).toEqual([
      { op: 'set', args: ['k1', 'v1', { expires: 30 }] },
      { op: 'add', args: ['k2', 'v2', { expires: 40 }] },
      { op: 'increment', args: ['k3', 1, { initial: 1, expires: 50 }] },
    ]);
  });

  it('decodes a stored Buffer as UTF-8', async () => {
    const text = '令牌-✓';
    const fake = fakeMemjs({ get: async () => ({ value: Buffer.from(text, 'utf8') }) });
    const s = new MemcachedStore({ servers: [], timeoutMs: TIMEOUT_MS }, fake.client);
    expect(await s.get('k')).toBe(text);
  });

  it.each([false, null])('reports an add answered %s as not stored', async (answer) => {
    const fake = fakeMemjs({ add: async () => answer });
    const s = new MemcachedStore({ servers: [], timeoutMs: TIMEOUT_MS }, fake.client);
    expect(await s.add('k', 'v', 60)).toBe(false);
  });

  it.each([
    ['no success', { success: false, value: null }],
    ['no value', { success: true, value: null }],
    ['a missing value', { success: true }],
  ])('fails an increment answered with %s as cache_unavailable', async (_kind, answer) => {
    const fake = fakeMemjs({ increment: async () => answer });
    const s = new MemcachedStore({ servers: [], timeoutMs: TIMEOUT_MS }, fake.client);
    expect((await failure(s.increment('k', 60))).code).toBe('cache_unavailable');
  });

  it('wraps a memjs error as cache_unavailable, keeping it as the cause', async () => {
    const cause = new Error('connect ECONNREFUSED 10.0.0.5:11211');
    const fake = fakeMemjs({
      get: async () => {
        throw cause;
      },
    });
    const s = new MemcachedStore({ servers: [], timeoutMs: TIMEOUT_MS }, fake.client);
    const err = await failure(s.get('k'));
    expect(err.code).toBe('cache_unavailable');
    expect(err.cause).toBe(cause);
    expect(err.retryable).toBe(true);
  });

  it('fails a call whose memjs callback never comes with cache_unavailable, after the attempt and its retry', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setImmediate'] });
    try {
      let monotonicMs = 0;
      const fake = fakeMemjs({ get: () => new Promise(() => {}) });
      const s = new MemcachedStore(
        { servers: [], timeoutMs: TIMEOUT_MS, monotonic: () => monotonicMs },
        fake.client,
      );
      let settled = false;
      const call = failure(s.get('k')).finally(() => {
        settled = true;
      });
      for (const ms of [TIMEOUT_MS + 1, 1000]) {
        monotonicMs += ms;
        await vi.advanceTimersByTimeAsync(ms);
      }
      expect(settled).toBe(false);
      monotonicMs += 1;
      await vi.advanceTimersByTimeAsync(1);
      expect((await call).code).toBe('cache_unavailable');
    } finally {
      vi.useRealTimers();
    }
  });

  // The guard timer bounding a call must not outlive it (a short-lived process would wait for it).
  it('leaves no timer armed after a call that succeeded', async () => {
    const fake = fakeMemjs();
    const s = new MemcachedStore({ servers: [], timeoutMs: TIMEOUT_MS }, fake.client);
    for (let i = 0; i < 10; i++) await s.get('k');
    expect(vi.getTimerCount()).toBe(0);
  });

  it("retries a call that lost its connection once, after dropping that key's connection", async () => {
    let gets = 0;
    const dropped: string[] = [];
    const fake = fakeMemjs({
      get: async () => {
        gets++;
        if (gets === 1) throw new Error('read ECONNRESET');
        return { value: Buffer.from('v') };
      },
      server: (key) => ({ error: () => dropped.push(key) }),
    });
    const s = new MemcachedStore({ servers: [], timeoutMs: TIMEOUT_MS }, fake.client);
    expect(await s.get('k')).toBe('v');
    expect(gets).toBe(2);
    expect(dropped).toEqual(['k']);
  });

  it('fails calls at once for failFastMs once a call failed twice, then tries memjs again', async () => {
    let gets = 0;
    let nowMs = Date.UTC(2025, 0, 15, 4, 0, 0);
    const fake = fakeMemjs({
      get: async () => {
        gets++;
        if (gets <= 2) throw new Error('connect ECONNREFUSED 127.0.0.1:11211');
        return { value: Buffer.from('v') };
      },
    });
    const failFastMs = 1000;
    const s = new MemcachedStore(
      { servers: [], timeoutMs: TIMEOUT_MS, failFastMs, now: () => nowMs },
      fake.client,
    );
    expect((await failure(s.get('k'))).message).toMatch(/failed twice/);
    expect(gets).toBe(2);
    const skipped = await failure(s.get('k'));
    expect(skipped.message).toMatch(/skipped/);
    expect(gets).toBe(2);
    nowMs += failFastMs;
    expect(await s.get('k')).toBe('v');
    expect(gets).toBe(3);
  });

  it('takes an error status memjs reports as an answer: no retry, no window', async () => {
    let gets = 0;
    const fake = fakeMemjs({
      get: async () => {
        gets++;
        if (gets === 1) throw new Error('MemJS GET: Value too large');
        return { value: Buffer.from('v') };
      },
    });
    const s = new MemcachedStore({ servers: [], timeoutMs: TIMEOUT_MS }, fake.client);
    expect((await failure(s.get('k'))).message).toBe('Memcached get: MemJS GET: Value too large');
    expect(gets).toBe(1);
    expect(await s.get('k')).toBe('v');
  });

  it('checks keys before any request reaches memjs', async () => {
    const fake = fakeMemjs();
    const s = new MemcachedStore({ servers: [], timeoutMs: TIMEOUT_MS }, fake.client);
    await expect(s.get('bad key')).rejects.toThrow(/invalid cache key/);
    await expect(s.set('k', 'v', 0)).rejects.toThrow(/invalid TTL/);
    expect(fake.calls).toEqual([]);
  });

  it('closes the memjs client on close', async () => {
    const fake = fakeMemjs();
    const s = new MemcachedStore({ servers: [], timeoutMs: TIMEOUT_MS }, fake.client);
    await s.close();
    expect(fake.closedCount()).toBe(1);
  });
});
