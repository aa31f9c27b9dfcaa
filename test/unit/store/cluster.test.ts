/**
 * The cluster router's rules (lib/store/cluster.ts) with in-memory nodes shared by several router
 * instances, as memcached nodes are shared by Lambda instances, a scripted configuration endpoint,
 * and an injected clock.
 */
import { describe, expect, it } from 'vitest';
import { ServiceError } from '../../../lib/errors.ts';
import type { KeyValueStore } from '../../../lib/ports.ts';
import { ClusterStore, JOURNAL_RETENTION_SECONDS } from '../../../lib/store/cluster.ts';
import type { NodeAddress } from '../../../lib/store/connection.ts';
import type { ClusterConfig } from '../../../lib/store/discovery.ts';
import { KetamaRing } from '../../../lib/store/ketama.ts';
import { MemoryStore } from '../../../lib/store/memory.ts';
import { failure } from '../../support/failure.ts';

const INTERVAL_MS = 60_000;
const LEASE_SECONDS = 10;
/** Two intervals + one lease + 5 s: how long a replaced list may still be used alone. */
const WINDOW_MS = 2 * INTERVAL_MS + LEASE_SECONDS * 1000 + 5_000;

let nowMs = Date.UTC(2025, 0, 15, 4, 0, 0);
const clock = { now: () => nowMs };

type Mode = 'up' | 'refused' | 'silent';

/** One memcached node: its data outlives any router, as a real node's does. */
class FakeNode {
  readonly data = new MemoryStore(clock);
  mode: Mode = 'up';
  calls = 0;

  adapter(): KeyValueStore {
    const guard = <T>(run: () => Promise<T>): Promise<T> => {
      this.calls++;
      if (this.mode === 'refused') {
        const cause = Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
        return Promise.reject(
          new ServiceError('cache_unavailable', 'Memcached call failed: refused', { cause }),
        );
      }
      if (this.mode === 'silent') {
        return Promise.reject(
          new ServiceError('cache_unavailable', 'Memcached call failed: no answer within 250 ms'),
        );
      }
      return run();
    };
    const d = this.data;
    return {
      get: (k) => guard(() => d.get(k)),
      gets: (k) => guard(() => d.gets(k)),
      set: (k, v, t) => guard(() => d.set(k, v, t)),
      add: (k, v, t) => guard(() => d.add(k, v, t)),
      delete: (k) => guard(() => d.delete(k)),
      deleteIfUnchanged: (k, c) => guard(() => d.deleteIfUnchanged(k, c)),
      increment: (k, t) => guard(() => d.increment(k, t)),
      close: async () => {},
    };
  }
}

/** A configuration endpoint whose answer the test changes. */
class Endpoint {
  answer: ClusterConfig | Error;
  fetches = 0;
  constructor(answer: ClusterConfig) {
    this.answer = answer;
  }
  async fetch(): Promise<ClusterConfig> {
    this.fetches++;
    if (this.answer instanceof Error) throw this.answer;
    return this.answer;
  }
  close(): void {}
}

const address = (i: number): NodeAddress => ({
  host: `node${i}.wts.cache.amazonaws.com`,
  port: 11211,
  ip: null,
});
const nameOf = (i: number) => `node${i}.wts.cache.amazonaws.com:11211`;

function world(nodeCount: number) {
  const nodes = new Map(Array.from({ length: nodeCount }, (_, i) => [nameOf(i + 1), new FakeNode()]));
  const node = (i: number) => nodes.get(nameOf(i)) as FakeNode;
  const list = (version: number, ids: number[]): ClusterConfig => ({ version, nodes: ids.map(address) });
  const router = (endpoint: Endpoint, journalPrefix = 'wts:topology') =>
    new ClusterStore({
      source: { kind: 'discovery', endpoint },
      connect: (a) => (nodes.get(`${a.host}:${a.port}`) as FakeNode).adapter(),
      intervalMs: INTERVAL_MS,
      lockLeaseSeconds: LEASE_SECONDS,
      journalPrefix,
      now: clock.now,
    });
  return { node, list, router };
}

/** Lock keys whose node under `before` differs from their node under `after`. */
function movedKeys(before: number[], after: number[], count: number): string[] {
  const a = new KetamaRing(before.map(nameOf));
  const b = new KetamaRing(after.map(nameOf));
  const keys: string[] = [];
  for (let i = 0; keys.length < count; i++) {
    const key = `wts:v1:lock:access_token:wx${i.toString(16).padStart(16, '0')}`;
    if (a.nodeFor(key) !== b.nodeFor(key)) keys.push(key);
  }
  return keys;
}

describe('ClusterStore routing', () => {
  it('puts each key on its ketama node, and keys spread over every node', async () => {
    const w = world(3);
    const store = w.router(new Endpoint(w.list(7, [1, 2, 3])));
    const ring = new KetamaRing([1, 2, 3].map(nameOf));
    for (let i = 0; i < 60; i++) await store.set(`wts:v1:rec:access_token:wx${i}`, `v${i}`, 60);
    for (let i = 0; i < 60; i++) {
      const key = `wts:v1:rec:access_token:wx${i}`;
      const owner = Number(/node(\d)/.exec(ring.nodeFor(key))?.[1]);
      expect(await w.node(owner).data.get(key)).toBe(`v${i}`);
      for (const other of [1, 2, 3].filter((n) => n !== owner))
        expect(await w.node(other).data.get(key)).toBeNull();
    }
    expect(store.describe()).toEqual({ nodes: 3, version: 7, lists: 1 });
  });

  it('asks for the node list once for concurrent first calls, again in the background after an interval, and waits only past two', async () => {
    const w = world(2);
    const endpoint = new Endpoint(w.list(1, [1, 2]));
    const store = w.router(endpoint);
    await Promise.all(Array.from({ length: 20 }, (_, i) => store.get(`k${i}`)));
    expect(endpoint.fetches).toBe(1);
    nowMs += INTERVAL_MS - 1;
    await store.get('k');
    expect(endpoint.fetches).toBe(1);
    nowMs += 1;
    await store.get('k'); // starts a round behind the call
    expect(endpoint.fetches).toBe(2);
    await new Promise((resolve) => setImmediate(resolve));
    // The endpoint fails from now on; the nodes still answer the journal, which confirms the list.
    endpoint.answer = new ServiceError(
      'cache_unavailable',
      'Memcached Auto Discovery failed: no answer within 250 ms',
    );
    nowMs += 2 * INTERVAL_MS;
    expect(await store.get('k')).toBeNull();
    // Neither the endpoint nor any node answers: past two intervals the list counts as unconfirmed.
    for (const node of [1, 2]) w.node(node).mode = 'silent';
    nowMs += 2 * INTERVAL_MS;
    const err = await failure(store.get('k'));
    expect(err.code).toBe('cache_unavailable');
    expect(err.message).toMatch(/node list cannot be confirmed/);
  });

  it('fails the first calls with the discovery error when the endpoint cannot be asked, and asks again a second later', async () => {
    const w = world(1);
    const endpoint = new Endpoint(w.list(1, [1]));
    endpoint.answer = new ServiceError(
      'cache_unavailable',
      'Memcached Auto Discovery failed: connection refused (ECONNREFUSED)',
    );
    const store = w.router(endpoint);
    expect((await failure(store.get('k'))).message).toMatch(/Auto Discovery failed: connection refused/);
    expect((await failure(store.get('k'))).message).toMatch(/Auto Discovery failed/);
    expect(endpoint.fetches).toBe(1);
    endpoint.answer = w.list(1, [1]);
    nowMs += 1_000;
    expect(await store.get('k')).toBeNull();
    expect(endpoint.fetches).toBe(2);
  });

  it('passes config_invalid through: an endpoint that is not a configuration endpoint is a configuration error', async () => {
    const w = world(1);
    const endpoint = new Endpoint(w.list(1, [1]));
    endpoint.answer = new ServiceError(
      'config_invalid',
      'Memcached Auto Discovery: … set MEMCACHED_AUTO_DISCOVERY=false',
    );
    expect((await failure(w.router(endpoint).get('k'))).code).toBe('config_invalid');
  });
});

describe('ClusterStore when the node list changes', () => {
  it('lets exactly one instance take a moved lock when one is still on the old list and one starts on the new', async () => {
    const w = world(4);
    const old = new Endpoint(w.list(1, [1, 2, 3]));
    const a = w.router(old);
    await a.get('warm-up'); // A knows list 1 and wrote it to the journal
    const keys = movedKeys([1, 2, 3], [1, 2, 3, 4], 40);
    const c = w.router(new Endpoint(w.list(2, [1, 2, 3, 4]))); // starts after the change
    const results = await Promise.all(
      keys.flatMap((key) => [a.add(key, `a:${key}`, LEASE_SECONDS), c.add(key, `c:${key}`, LEASE_SECONDS)]),
    );
    for (let i = 0; i < keys.length; i++)
      expect([results[2 * i], results[2 * i + 1]].filter(Boolean)).toHaveLength(1);
    expect(c.describe()).toEqual({ nodes: 4, version: 2, lists: 2 });
  });

  it('would let both take it without the journal (instances that cannot see each other’s lists)', async () => {
    const w = world(4);
    const a = w.router(new Endpoint(w.list(1, [1, 2, 3])), 'wts:journal-a');
    await a.get('warm-up');
    const c = w.router(new Endpoint(w.list(2, [1, 2, 3, 4])), 'wts:journal-c');
    const [key] = movedKeys([1, 2, 3], [1, 2, 3, 4], 1) as [string];
    expect(await a.add(key, 'a', LEASE_SECONDS)).toBe(true);
    expect(await c.add(key, 'c', LEASE_SECONDS)).toBe(true);
  });

  it('lets a new instance read a record an instance still on the old list wrote to the old node only', async () => {
    const w = world(4);
    const a = w.router(new Endpoint(w.list(1, [1, 2, 3])));
    await a.get('warm-up');
    const c = w.router(new Endpoint(w.list(2, [1, 2, 3, 4])));
    await c.get('warm-up');
    for (const key of movedKeys([1, 2, 3], [1, 2, 3, 4], 10)) {
      await a.set(key, 'written on the old node', 7200);
      expect(await c.get(key)).toBe('written on the old node');
      await c.set(key, 'written by the new instance', 7200);
      expect(await a.get(key)).toBe('written by the new instance');
    }
  });

  it('refuses the lock to an instance on the new list while a peer on the old list holds it, and frees it on release by CAS', async () => {
    const w = world(4);
    const endpoint = new Endpoint(w.list(1, [1, 2, 3]));
    const a = w.router(endpoint);
    const b = w.router(endpoint);
    await Promise.all([a.get('x'), b.get('x')]);
    const [key] = movedKeys([1, 2, 3], [1, 2, 3, 4], 1) as [string];
    endpoint.answer = w.list(2, [1, 2, 3, 4]);
    nowMs += INTERVAL_MS;
    await b.get('x'); // B starts a round: wait for it
    await new Promise((resolve) => setTimeout(resolve, 0));
    expect(b.describe()?.lists).toBe(2);
    expect(await b.add(key, 'b', LEASE_SECONDS)).toBe(true); // on both owners
    expect(await a.add(key, 'a', LEASE_SECONDS)).toBe(false); // A, still on list 1 alone, meets it on the old node
    const held = await b.gets(key);
    expect(held?.value).toBe('b');
    expect(await b.deleteIfUnchanged(key, held!.cas)).toBe(true);
    for (const n of [1, 2, 3, 4]) expect(await w.node(n).data.get(key)).toBeNull();
    expect(await a.add(key, 'a', LEASE_SECONDS)).toBe(true);
  });

  it('undoes a half-taken lock: stored on the old owner, refused on the new one', async () => {
    const w = world(4);
    const c = w.router(new Endpoint(w.list(2, [1, 2, 3, 4])));
    const a = w.router(new Endpoint(w.list(1, [1, 2, 3])));
    await a.get('x');
    await c.get('x');
    const [key] = movedKeys([1, 2, 3], [1, 2, 3, 4], 1) as [string];
    const newOwner = Number(/node(\d)/.exec(new KetamaRing([1, 2, 3, 4].map(nameOf)).nodeFor(key))?.[1]);
    await w.node(newOwner).data.add(key, 'someone on list 2 only', LEASE_SECONDS);
    expect(await c.add(key, 'c', LEASE_SECONDS)).toBe(false);
    const oldOwner = Number(/node(\d)/.exec(new KetamaRing([1, 2, 3].map(nameOf)).nodeFor(key))?.[1]);
    expect(await w.node(oldOwner).data.get(key)).toBeNull();
  });

  it('reads the old owner first while the old list may be in sole use, the new owner first after that', async () => {
    const w = world(4);
    const a = w.router(new Endpoint(w.list(1, [1, 2, 3])));
    await a.get('x');
    const c = w.router(new Endpoint(w.list(2, [1, 2, 3, 4])));
    await c.get('x');
    const [key] = movedKeys([1, 2, 3], [1, 2, 3, 4], 1) as [string];
    const oldOwner = Number(/node(\d)/.exec(new KetamaRing([1, 2, 3].map(nameOf)).nodeFor(key))?.[1]);
    const newOwner = Number(/node(\d)/.exec(new KetamaRing([1, 2, 3, 4].map(nameOf)).nodeFor(key))?.[1]);
    await w.node(oldOwner).data.set(key, 'old', 7200);
    await w.node(newOwner).data.set(key, 'new', 7200);
    expect(await c.get(key)).toBe('old');
    nowMs += WINDOW_MS - 1;
    expect(await c.get(key)).toBe('old');
    nowMs += 1;
    expect(await c.get(key)).toBe('new');
    await w.node(newOwner).data.delete(key);
    expect(await c.get(key)).toBe('old'); // a miss on the new owner is asked of the old one
  });

  it('counts on every owner and answers the larger count', async () => {
    const w = world(4);
    const a = w.router(new Endpoint(w.list(1, [1, 2, 3])));
    await a.get('x');
    const [key] = movedKeys([1, 2, 3], [1, 2, 3, 4], 1) as [string];
    for (let i = 0; i < 5; i++) await a.increment(key, 600);
    const c = w.router(new Endpoint(w.list(2, [1, 2, 3, 4])));
    expect(await c.increment(key, 600)).toBe(6);
    expect(await a.increment(key, 600)).toBe(7);
    expect(await c.increment(key, 600)).toBe(8);
  });

  it('forgets the old list once its journal entry has expired, and then writes the new owner only', async () => {
    const w = world(4);
    const endpoint = new Endpoint(w.list(1, [1, 2, 3]));
    const a = w.router(endpoint);
    await a.get('x');
    endpoint.answer = w.list(2, [1, 2, 3, 4]);
    const c = w.router(endpoint);
    await c.get('x');
    expect(c.describe()?.lists).toBe(2);
    // A and C keep asking every interval; nobody writes list 1 any more.
    for (let t = 0; t < JOURNAL_RETENTION_SECONDS * 1000 + 3 * INTERVAL_MS; t += INTERVAL_MS) {
      nowMs += INTERVAL_MS;
      await c.get('x');
      await a.get('x');
      await new Promise((resolve) => setImmediate(resolve));
    }
    expect(c.describe()).toEqual({ nodes: 4, version: 2, lists: 1 });
    expect(a.describe()).toEqual({ nodes: 4, version: 2, lists: 1 });
    const [key] = movedKeys([1, 2, 3], [1, 2, 3, 4], 1) as [string];
    const oldOwner = Number(/node(\d)/.exec(new KetamaRing([1, 2, 3].map(nameOf)).nodeFor(key))?.[1]);
    await c.set(key, 'v', 60);
    expect(await w.node(oldOwner).data.get(key)).toBeNull();
  });
});

describe('ClusterStore when a node leaves the list', () => {
  it('skips a removed node that refuses connections: its keys’ locks are taken on their new node alone', async () => {
    const w = world(3);
    const endpoint = new Endpoint(w.list(1, [1, 2, 3]));
    const a = w.router(endpoint);
    await a.get('x');
    w.node(3).mode = 'refused';
    endpoint.answer = w.list(2, [1, 2]);
    const c = w.router(endpoint);
    const keys = movedKeys([1, 2, 3], [1, 2], 10);
    for (const key of keys) {
      expect(await c.add(key, 'c', LEASE_SECONDS)).toBe(true);
      expect(await c.get(key)).toBe('c');
    }
    // Refused once, then not asked again for a while.
    const calls = w.node(3).calls;
    await c.get(keys[0] as string);
    expect(w.node(3).calls).toBe(calls);
  });

  it('treats a removed node that does not answer as a failure while the old list may be in sole use, and skips it after', async () => {
    const w = world(3);
    const endpoint = new Endpoint(w.list(1, [1, 2, 3]));
    const a = w.router(endpoint);
    await a.get('x');
    w.node(3).mode = 'silent';
    endpoint.answer = w.list(2, [1, 2]);
    const c = w.router(endpoint);
    const [key] = movedKeys([1, 2, 3], [1, 2], 1) as [string];
    const err = await failure(c.add(key, 'c', LEASE_SECONDS));
    expect(err.code).toBe('cache_unavailable');
    // Reads fail too (the old owner is the one that may hold the latest write), and the add left nothing behind.
    expect((await failure(c.get(key))).code).toBe('cache_unavailable');
    for (const n of [1, 2]) expect(await w.node(n).data.get(key)).toBeNull();
    nowMs += WINDOW_MS;
    await c.get('x');
    await new Promise((resolve) => setImmediate(resolve));
    expect(await c.add(key, 'c', LEASE_SECONDS)).toBe(true);
  });

  it('never skips a node of the current list: a failure there is cache_unavailable', async () => {
    const w = world(3);
    const store = w.router(new Endpoint(w.list(1, [1, 2, 3])));
    await store.get('x');
    for (const n of [1, 2, 3]) w.node(n).mode = 'refused';
    const err = await failure(store.add('wts:v1:lock:access_token:wx1', 'v', 10));
    expect(err.code).toBe('cache_unavailable');
  });
});

describe('ClusterStore with a fixed node list', () => {
  it('routes by ketama without asking any endpoint', async () => {
    const nodes = new Map([1, 2].map((i) => [nameOf(i), new FakeNode()]));
    const store = new ClusterStore({
      source: { kind: 'static', nodes: [address(1), address(2)] },
      connect: (a) => (nodes.get(`${a.host}:${a.port}`) as FakeNode).adapter(),
      lockLeaseSeconds: LEASE_SECONDS,
      journalPrefix: 'wts:topology',
      now: clock.now,
    });
    const ring = new KetamaRing([1, 2].map(nameOf));
    await store.set('a-key', 'v', 60);
    expect(await (nodes.get(ring.nodeFor('a-key')) as FakeNode).data.get('a-key')).toBe('v');
    expect(store.describe()).toEqual({ nodes: 2, version: 0, lists: 1 });
  });
});
