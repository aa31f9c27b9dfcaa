/**
 * The KeyValueStore contract, run against every adapter: the in-memory fake must behave like the
 * Memcached adapter talking to a real memcached, or tests that use the fake prove nothing.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, inject, it } from 'vitest';
import { ServiceError } from '../../../lib/errors.ts';
import type { KeyValueStore } from '../../../lib/ports.ts';
import { ClusterStore } from '../../../lib/store/cluster.ts';
import { parseHostPort } from '../../../lib/store/connection.ts';
import { ConfigEndpoint } from '../../../lib/store/discovery.ts';
import { MemcachedStore } from '../../../lib/store/memcached.ts';
import { TextMemcachedStore } from '../../../lib/store/memcached-text.ts';
import { nodeSocketFactory } from '../../../lib/store/memjs-socket.ts';
import { MemoryStore } from '../../../lib/store/memory.ts';
import { MAX_TTL_SECONDS } from '../../../lib/store/validate.ts';
import {
  type MemcachedOptions,
  type MemcachedProcess,
  startMemcached,
} from '../../../local/memcached-server.ts';
import { createTestCa } from '../../../local/test-ca.ts';
import { type LocalConfigEndpoint, startConfigEndpoint } from '../../support/config-endpoint.ts';

interface ContractTarget {
  /** Called once before the suite. */
  open(): Promise<KeyValueStore>;
  /** Lets `ms` pass as the store sees time: moves an injected clock, or really waits. */
  elapse(ms: number): Promise<void>;
}

const OPERATIONS = ['get', 'set', 'add', 'delete', 'increment', 'gets'] as const;

function call(
  store: KeyValueStore,
  op: (typeof OPERATIONS)[number],
  key: string,
  ttl = 60,
): Promise<unknown> {
  switch (op) {
    case 'get':
      return store.get(key);
    case 'set':
      return store.set(key, 'v', ttl);
    case 'add':
      return store.add(key, 'v', ttl);
    case 'delete':
      return store.delete(key);
    case 'increment':
      return store.increment(key, ttl);
    case 'gets':
      return store.gets(key);
  }
}

/** Rejects with the plain Error of an argument check: a bug in the caller, never a cache outage. */
async function expectArgumentError(promise: Promise<unknown>, pattern: RegExp): Promise<void> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(Error);
  expect(err).not.toBeInstanceOf(ServiceError);
  expect((err as Error).message).toMatch(pattern);
}

function storeContract(name: string, target: ContractTarget): void {
  describe(`KeyValueStore contract: ${name}`, () => {
    let store: KeyValueStore;
    let prefix: string;
    const key = (suffix: string) => `${prefix}:${suffix}`;

    beforeAll(async () => {
      store = await target.open();
    });

    afterAll(async () => {
      await store.close();
    });

    beforeEach(() => {
      prefix = `contract-${randomUUID()}`;
    });

    it('answers null for a key that was never set', async () => {
      expect(await store.get(key('absent'))).toBeNull();
    });

    it('returns what set stored, byte for byte, for UTF-8 and 2 KB values', async () => {
      const unicode = '令牌 ✓ 🚀 «ok» \\ "quoted" \u00e9';
      const large = Array.from({ length: 200 }, (_, i) => `${i}:值🚀`).join('|');
      expect(Buffer.byteLength(large, 'utf8')).toBeGreaterThanOrEqual(2048);
      await store.set(key('unicode'), unicode, 60);
      await store.set(key('large'), large, 60);
      expect(await store.get(key('unicode'))).toBe(unicode);
      expect(await store.get(key('large'))).toBe(large);
    });

    it('replaces a value on a second set', async () => {
      await store.set(key('k'), 'first', 60);
      await store.set(key('k'), 'second', 60);
      expect(await store.get(key('k'))).toBe('second');
    });

    it('adds an absent key (true) and refuses to add it again without touching the value (false)', async () => {
      expect(await store.add(key('k'), 'mine', 60)).toBe(true);
      expect(await store.add(key('k'), 'theirs', 60)).toBe(false);
      expect(await store.get(key('k'))).toBe('mine');
    });

    it('refuses to add a key that set created', async () => {
      await store.set(key('k'), 'set', 60);
      expect(await store.add(key('k'), 'add', 60)).toBe(false);
      expect(await store.get(key('k'))).toBe('set');
    });

    it('lets exactly one of 100 concurrent adds win, and keeps the winner’s value', async () => {
      const values = Array.from({ length: 100 }, (_, i) => `owner-${i}`);
      const results = await Promise.all(values.map((v) => store.add(key('lock'), v, 60)));
      const winners = values.filter((_, i) => results[i]);
      expect(winners).toHaveLength(1);
      expect(await store.get(key('lock'))).toBe(winners[0]);
    });

    it('deletes a key, after which get answers null and add succeeds', async () => {
      await store.set(key('k'), 'v', 60);
      await store.delete(key('k'));
      expect(await store.get(key('k'))).toBeNull();
      expect(await store.add(key('k'), 'again', 60)).toBe(true);
    });

    it('treats deleting an absent key as success', async () => {
      await expect(store.delete(key('never-set'))).resolves.toBeUndefined();
    });

    it('starts a counter at 1 and counts up by one', async () => {
      const counts = [];
      for (let i = 0; i < 5; i++) counts.push(await store.increment(key('calls'), 60));
      expect(counts).toEqual([1, 2, 3, 4, 5]);
      expect(await store.get(key('calls'))).toBe(String(counts.length));
    });

    it('counts 100 concurrent increments exactly, each caller seeing a distinct value', async () => {
      const n = 100;
      const results = await Promise.all(Array.from({ length: n }, () => store.increment(key('calls'), 60)));
      expect([...results].sort((a, b) => a - b)).toEqual(Array.from({ length: n }, (_, i) => i + 1));
      expect(await store.get(key('calls'))).toBe(String(n));
    });

    it('answers gets with the value and a version, and null for an absent key', async () => {
      expect(await store.gets(key('absent'))).toBeNull();
      await store.set(key('v'), 'one', 60);
      const first = await store.gets(key('v'));
      expect(first?.value).toBe('one');
      await store.set(key('v'), 'two', 60);
      const second = await store.gets(key('v'));
      expect(second?.value).toBe('two');
      expect(second?.cas).not.toBe(first?.cas);
    });

    it('deletes with deleteIfUnchanged only while the version is the one gets answered', async () => {
      await store.set(key('lock'), 'owner-a', 60);
      const seen = await store.gets(key('lock'));
      // A peer writes in between: the old version no longer deletes anything.
      await store.set(key('lock'), 'owner-b', 60);
      expect(await store.deleteIfUnchanged(key('lock'), seen!.cas)).toBe(false);
      expect(await store.get(key('lock'))).toBe('owner-b');
      const current = await store.gets(key('lock'));
      expect(await store.deleteIfUnchanged(key('lock'), current!.cas)).toBe(true);
      expect(await store.get(key('lock'))).toBeNull();
      expect(await store.deleteIfUnchanged(key('lock'), current!.cas)).toBe(false);
    });

    it('gives an add and an increment a new version too', async () => {
      await store.add(key('a'), 'x', 60);
      const added = await store.gets(key('a'));
      await store.increment(key('n'), 60);
      const counted = await store.gets(key('n'));
      await store.increment(key('n'), 60);
      expect((await store.gets(key('n')))?.cas).not.toBe(counted?.cas);
      expect(await store.deleteIfUnchanged(key('a'), added!.cas)).toBe(true);
    });

    it('keeps separate keys separate', async () => {
      await store.set(key('a'), 'A', 60);
      expect(await store.increment(key('b'), 60)).toBe(1);
      expect(await store.get(key('a'))).toBe('A');
      expect(await store.get(key('c'))).toBeNull();
    });

    it('forgets a key after its TTL, after which add and increment start over; a counter keeps its first TTL', async () => {
      // 2-second TTLs: memcached's clock ticks in whole seconds, so a 1-second TTL can lapse at once.
      await store.set(key('short'), 'v', 2);
      await store.add(key('short-add'), 'v', 2);
      await store.set(key('long'), 'stays', 60);
      expect(await store.increment(key('counter'), 2)).toBe(1);
      // The TTL of an existing counter is not extended by later increments.
      expect(await store.increment(key('counter'), 3600)).toBe(2);
      expect(await store.get(key('short'))).toBe('v');

      await target.elapse(3100);

      expect(await store.get(key('short'))).toBeNull();
      expect(await store.get(key('short-add'))).toBeNull();
      expect(await store.get(key('long'))).toBe('stays');
      expect(await store.add(key('short'), 'again', 60)).toBe(true);
      expect(await store.increment(key('counter'), 60)).toBe(1);
    });

    it('reads the longest TTL (30 days) as a duration, not as a Unix time', async () => {
      await store.set(key('month'), 'v', MAX_TTL_SECONDS);
      expect(await store.add(key('month-add'), 'v', MAX_TTL_SECONDS)).toBe(true);
      expect(await store.get(key('month'))).toBe('v');
      expect(await store.get(key('month-add'))).toBe('v');
    });

    it('accepts a key of exactly 250 printable ASCII characters', async () => {
      const k = key('k').padEnd(250, '~');
      expect(k).toHaveLength(250);
      await store.set(k, 'v', 60);
      expect(await store.get(k)).toBe('v');
    });

    describe.each(OPERATIONS)('%s', (op) => {
      it.each([
        ['empty', ''],
        ['251 characters', 'k'.repeat(251)],
        ['with a space', 'wts:v1:rec:a b'],
        ['with a newline', 'wts:v1:rec\r\nflush_all'],
        ['with a tab', 'wts:v1:\trec'],
        ['non-ASCII', 'wts:v1:令牌'],
        ['with DEL', 'wts:v1:\x7f'],
      ])('rejects a key that is %s as a caller bug', async (_kind, badKey) => {
        await expectArgumentError(call(store, op, badKey), /invalid cache key/);
      });
    });

    describe.each(['set', 'add', 'increment'] as const)('%s', (op) => {
      it.each([0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, MAX_TTL_SECONDS + 1])(
        'rejects a TTL of %s seconds as a caller bug, storing nothing',
        async (ttl) => {
          await expectArgumentError(call(store, op, key('k'), ttl), /invalid TTL/);
          expect(await store.get(key('k'))).toBeNull();
        },
      );
    });
  });
}

let clockMs = Date.UTC(2025, 0, 15, 4, 0, 0);
storeContract('MemoryStore (injected clock)', {
  open: async () => new MemoryStore({ now: () => clockMs }),
  elapse: async (ms) => {
    clockMs += ms;
  },
});

storeContract('MemcachedStore (real memcached)', {
  open: async () => new MemcachedStore({ servers: [inject('memcachedAddress')], timeoutMs: 1000 }),
  // memcached counts TTLs in whole seconds on its own clock: the only real wait in the suite.
  elapse: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
});

// The same contract over every protocol and transport ElastiCache offers. Each server below is this
// file's own, started on first use and stopped at the end.
const ca = createTestCa();
const started: MemcachedProcess[] = [];
const endpoints: LocalConfigEndpoint[] = [];
async function memcached(options: MemcachedOptions): Promise<MemcachedProcess> {
  const mc = await startMemcached(options);
  started.push(mc);
  return mc;
}
const tlsFiles = () => ({ ...ca.issue(['localhost', '127.0.0.1']), caFile: ca.caFile });
afterAll(async () => {
  await Promise.all([...started.map((mc) => mc.stop()), ...endpoints.map((e) => e.close())]);
  ca.remove();
});
const realWait = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

storeContract('TextMemcachedStore (text protocol, memcached -B ascii)', {
  open: async () => {
    const mc = await memcached({ protocol: 'ascii' });
    return new TextMemcachedStore({
      node: { ...parseHostPort(mc.address), ip: null },
      tls: false,
      timeoutMs: 1000,
    });
  },
  elapse: realWait,
});

storeContract('TextMemcachedStore over TLS (memcached -Z -B ascii, as ElastiCache Serverless)', {
  open: async () => {
    const mc = await memcached({ protocol: 'ascii', tls: tlsFiles() });
    // Dialled by IP, verified against the name: as a node from Auto Discovery is.
    return new TextMemcachedStore({
      node: { host: 'localhost', port: mc.port, ip: mc.host },
      tls: { ca: ca.caPem },
      timeoutMs: 1000,
    });
  },
  elapse: realWait,
});

storeContract('MemcachedStore over TLS (binary protocol, memcached -Z)', {
  open: async () => {
    const mc = await memcached({ tls: tlsFiles() });
    const node = { host: 'localhost', port: mc.port, ip: mc.host };
    return new MemcachedStore({
      servers: [`localhost:${mc.port}`],
      timeoutMs: 1000,
      socket: { factory: nodeSocketFactory(node, { ca: ca.caPem }), tls: true },
    });
  },
  elapse: realWait,
});

storeContract(
  'ClusterStore: 3 TLS text-protocol nodes behind a TLS configuration endpoint (ketama, Auto Discovery)',
  {
    open: async () => {
      const names = ['node1.wts.test', 'node2.wts.test', 'node3.wts.test'];
      const certificate = ca.issue([...names, 'localhost', '127.0.0.1', '127.0.0.2', '127.0.0.3']);
      const nodes = await Promise.all(
        [1, 2, 3].map((i) =>
          memcached({ host: `127.0.0.${i}`, protocol: 'ascii', tls: { ...certificate, caFile: ca.caFile } }),
        ),
      );
      const endpoint = await startConfigEndpoint(
        nodes.map((mc, i) => ({ host: names[i] as string, ip: mc.host, port: mc.port })),
        { tls: certificate },
      );
      endpoints.push(endpoint);
      const tls = { ca: ca.caPem };
      return new ClusterStore({
        source: {
          kind: 'discovery',
          endpoint: new ConfigEndpoint({
            endpoint: { host: 'localhost', port: endpoint.port, ip: '127.0.0.1' },
            tls,
            timeoutMs: 1000,
          }),
        },
        connect: (node) => new TextMemcachedStore({ node, tls, timeoutMs: 1000 }),
        lockLeaseSeconds: 10,
        journalPrefix: 'contract:topology',
      });
    },
    elapse: realWait,
  },
);
