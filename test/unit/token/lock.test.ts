import { describe, expect, it } from 'vitest';
import { ServiceError } from '../../../lib/errors.ts';
import type { KeyValueStore } from '../../../lib/ports.ts';
import { MemoryStore } from '../../../lib/store/memory.ts';
import { isCacheDown, type LockHandle, RefreshLock } from '../../../lib/token/lock.ts';

const LEASE_SECONDS = 10;
const KEY = 'wts:v1:lock:access_token:wx0123456789abcdef';

function setup(leaseSeconds = LEASE_SECONDS) {
  const clock = { t: Date.UTC(2025, 0, 15, 4, 0, 0), now: () => clock.t };
  const store = new MemoryStore(clock);
  return { clock, store, lock: new RefreshLock(store, clock, leaseSeconds) };
}

const cacheDown = (what: string) => new ServiceError('cache_unavailable', `Memcached ${what} failed`);

/** A store whose operations can be replaced one by one. */
function wrapped(inner: KeyValueStore, overrides: Partial<KeyValueStore>): KeyValueStore {
  return {
    get: (key) => inner.get(key),
    set: (key, value, ttl) => inner.set(key, value, ttl),
    add: (key, value, ttl) => inner.add(key, value, ttl),
    delete: (key) => inner.delete(key),
    gets: (key) => inner.gets(key),
    deleteIfUnchanged: (key, cas) => inner.deleteIfUnchanged(key, cas),
    increment: (key, ttl) => inner.increment(key, ttl),
    close: () => inner.close(),
    ...overrides,
  };
}

async function won(promise: Promise<LockHandle | null>): Promise<LockHandle> {
  const handle = await promise;
  expect(handle).not.toBeNull();
  return handle as LockHandle;
}

describe('RefreshLock.acquire', () => {
  it('lets exactly one of 50 concurrent acquirers win, and stores the winner as owner', async () => {
    const { store, lock } = setup();
    const handles = await Promise.all(Array.from({ length: 50 }, () => lock.acquire(KEY)));
    const winners = handles.filter((h): h is LockHandle => h !== null);
    expect(winners).toHaveLength(1);
    expect(await store.get(KEY)).toBe(winners[0]?.owner);
  });

  it('gives each acquisition a fresh random owner', async () => {
    const { clock, lock } = setup();
    const first = await won(lock.acquire(KEY));
    clock.t += LEASE_SECONDS * 1000;
    const second = await won(lock.acquire(KEY));
    expect(second.owner).not.toBe(first.owner);
    expect(first.owner.length).toBeGreaterThanOrEqual(16);
  });

  it('ends the usable part of the lease more than a second before Memcached may expire the key', async () => {
    const { clock, lock } = setup();
    const handle = await won(lock.acquire(KEY));
    expect(handle.acquiredAtMs).toBe(clock.t);
    // Memcached expires whole seconds on its own clock: the key can vanish up to 1 s early.
    expect(handle.usableUntilMs).toBeLessThanOrEqual(handle.acquiredAtMs + (LEASE_SECONDS - 1) * 1000);
    expect(handle.usableUntilMs).toBeGreaterThan(handle.acquiredAtMs);
    expect(lock.fetchDeadlineMs(handle)).toBeLessThan(handle.usableUntilMs);
    expect(lock.fetchDeadlineMs(handle)).toBeGreaterThan(handle.acquiredAtMs);
  });

  it('counts an add whose reply was lost as won, after reading its own owner back', async () => {
    const { clock, store } = setup();
    let adds = 0;
    const lossy = wrapped(store, {
      add: async (key, value, ttl) => {
        adds++;
        await store.add(key, value, ttl);
        throw cacheDown('add');
      },
    });
    const lock = new RefreshLock(lossy, clock, LEASE_SECONDS);
    const handle = await won(lock.acquire(KEY));
    expect(await store.get(KEY)).toBe(handle.owner);
    expect(adds).toBe(1);
    expect(await lock.stillHeld(handle)).toBe(true);
  });

  it('reports a failed add as lost, not as an error, when a peer holds the lock', async () => {
    const { clock, store, lock: peerLock } = setup();
    const peer = await won(peerLock.acquire(KEY));
    const failing = wrapped(store, {
      add: async () => {
        throw cacheDown('add');
      },
    });
    expect(await new RefreshLock(failing, clock, LEASE_SECONDS).acquire(KEY)).toBeNull();
    expect(await store.get(KEY)).toBe(peer.owner);
  });

  it('throws the add’s cache_unavailable when the add failed and nobody holds the lock', async () => {
    const { clock, store } = setup();
    const failing = wrapped(store, {
      add: async () => {
        throw cacheDown('add');
      },
    });
    await expect(new RefreshLock(failing, clock, LEASE_SECONDS).acquire(KEY)).rejects.toMatchObject({
      code: 'cache_unavailable',
      message: 'Memcached add failed',
    });
  });

  it('throws the add’s error when both the add and the read-back fail', async () => {
    const { clock, store } = setup();
    const down = wrapped(store, {
      add: async () => {
        throw cacheDown('add');
      },
      get: async () => {
        throw cacheDown('get');
      },
    });
    await expect(new RefreshLock(down, clock, LEASE_SECONDS).acquire(KEY)).rejects.toMatchObject({
      code: 'cache_unavailable',
      message: 'Memcached add failed',
    });
  });

  it('throws cache_unavailable when the add answered "exists" but the read-back failed', async () => {
    const { clock, store, lock: peerLock } = setup();
    await won(peerLock.acquire(KEY));
    const unreadable = wrapped(store, {
      get: async () => {
        throw cacheDown('get');
      },
    });
    await expect(new RefreshLock(unreadable, clock, LEASE_SECONDS).acquire(KEY)).rejects.toMatchObject({
      code: 'cache_unavailable',
    });
  });

  it('lets another instance acquire once the holder’s lease has lapsed', async () => {
    const { clock, lock } = setup();
    const crashed = await won(lock.acquire(KEY));
    clock.t += LEASE_SECONDS * 1000 - 1;
    expect(await lock.acquire(KEY)).toBeNull();
    expect(await lock.isHeld(KEY)).toBe(true);
    clock.t += 1;
    expect(await lock.isHeld(KEY)).toBe(false);
    const successor = await won(lock.acquire(KEY));
    expect(successor.owner).not.toBe(crashed.owner);
    expect(await lock.stillHeld(crashed)).toBe(false);
  });
});

describe('RefreshLock.stillHeld', () => {
  it('is true for the owner inside the usable lease', async () => {
    const { clock, lock } = setup();
    const handle = await won(lock.acquire(KEY));
    clock.t = handle.usableUntilMs - 1;
    expect(await lock.stillHeld(handle)).toBe(true);
  });

  it('is false from usableUntilMs on, although the key is still there', async () => {
    const { clock, store, lock } = setup();
    const handle = await won(lock.acquire(KEY));
    clock.t = handle.usableUntilMs;
    expect(await store.get(KEY)).toBe(handle.owner);
    expect(await lock.stillHeld(handle)).toBe(false);
  });

  it('is false when the key holds another owner', async () => {
    const { store, lock } = setup();
    const handle = await won(lock.acquire(KEY));
    await store.set(KEY, 'someone-else', LEASE_SECONDS);
    expect(await lock.stillHeld(handle)).toBe(false);
  });

  it('is false when the key is gone', async () => {
    const { store, lock } = setup();
    const handle = await won(lock.acquire(KEY));
    await store.delete(KEY);
    expect(await lock.stillHeld(handle)).toBe(false);
  });
});

describe('RefreshLock.release', () => {
  it('deletes the owner’s lock inside the lease, so the next acquire wins at once', async () => {
    const { store, lock } = setup();
    const handle = await won(lock.acquire(KEY));
    await lock.release(handle);
    expect(await store.get(KEY)).toBeNull();
    await won(lock.acquire(KEY));
  });

  it('leaves a successor’s lock alone after the holder’s lease lapsed', async () => {
    const { clock, store, lock } = setup();
    const late = await won(lock.acquire(KEY));
    clock.t += LEASE_SECONDS * 1000;
    const successor = await won(lock.acquire(KEY));
    await lock.release(late);
    expect(await store.get(KEY)).toBe(successor.owner);
  });

  it('deletes its own key after usableUntilMs too, while no successor has taken it', async () => {
    const { clock, store, lock } = setup();
    const handle = await won(lock.acquire(KEY));
    clock.t = handle.usableUntilMs;
    await lock.release(handle);
    expect(await store.get(KEY)).toBeNull();
  });

  it('does not delete a lock another owner holds, even inside its own lease', async () => {
    const { store, lock } = setup();
    const handle = await won(lock.acquire(KEY));
    await store.set(KEY, 'someone-else', LEASE_SECONDS);
    await lock.release(handle);
    expect(await store.get(KEY)).toBe('someone-else');
  });

  it("does not delete a successor's lock taken while the holder was frozen between reading the owner and deleting", async () => {
    const { clock, store } = setup();
    const plain = new RefreshLock(store, clock, LEASE_SECONDS);
    let successor: LockHandle | undefined;
    const frozenHolder = new RefreshLock(
      wrapped(store, {
        gets: async (key) => {
          const seen = await store.gets(key);
          // Frozen here: the lease lapses, the key expires, and a successor takes the lock.
          clock.t += LEASE_SECONDS * 1000;
          successor = await won(plain.acquire(KEY));
          return seen;
        },
      }),
      clock,
      LEASE_SECONDS,
    );
    const handle = await won(plain.acquire(KEY));
    await frozenHolder.release(handle);
    expect(await store.get(KEY)).toBe(successor!.owner);
  });

  it('never throws when the cache is down (the lease ends the lock)', async () => {
    const { clock, store, lock } = setup();
    const handle = await won(lock.acquire(KEY));
    const down = wrapped(store, {
      gets: async () => {
        throw cacheDown('gets');
      },
      deleteIfUnchanged: async () => {
        throw cacheDown('delete');
      },
    });
    await expect(new RefreshLock(down, clock, LEASE_SECONDS).release(handle)).resolves.toBeUndefined();
  });
});

describe('isCacheDown', () => {
  it.each([
    [cacheDown('get'), true],
    [new ServiceError('wechat_unavailable', 'busy'), false],
    [Object.assign(new Error('x'), { code: 'cache_unavailable' }), false],
    ['cache_unavailable', false],
  ])('recognises only a cache_unavailable ServiceError (%#)', (err, expected) => {
    expect(isCacheDown(err)).toBe(expected);
  });
});
