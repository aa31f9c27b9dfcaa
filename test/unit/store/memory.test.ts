import { describe, expect, it } from 'vitest';
import { MemoryStore } from '../../../lib/store/memory.ts';

function storeWithClock(startMs = Date.UTC(2025, 0, 15, 4, 0, 0)) {
  const clock = { t: startMs, now: () => clock.t };
  return { store: new MemoryStore(clock), clock };
}

describe('MemoryStore (specifics beyond the shared contract)', () => {
  it.each([1, 7, 7200])('keeps a value for exactly its %i-second TTL on the injected clock', async (ttl) => {
    const { store, clock } = storeWithClock();
    await store.set('k', 'v', ttl);
    clock.t += ttl * 1000 - 1;
    expect(await store.get('k')).toBe('v');
    clock.t += 1;
    expect(await store.get('k')).toBeNull();
  });

  it('lets add take a key the moment its previous value expires', async () => {
    const { store, clock } = storeWithClock();
    expect(await store.add('lock', 'a', 10)).toBe(true);
    clock.t += 10_000 - 1;
    expect(await store.add('lock', 'b', 10)).toBe(false);
    clock.t += 1;
    expect(await store.add('lock', 'b', 10)).toBe(true);
    expect(await store.get('lock')).toBe('b');
  });

  it('keeps a counter’s expiry from its creation, however often it is incremented', async () => {
    const { store, clock } = storeWithClock();
    expect(await store.increment('c', 5)).toBe(1);
    clock.t += 4000;
    expect(await store.increment('c', 3600)).toBe(2);
    clock.t += 1000;
    expect(await store.increment('c', 3600)).toBe(1);
  });

  it('forgets everything on close', async () => {
    const { store } = storeWithClock();
    await store.set('k', 'v', 60);
    await store.close();
    expect(await store.get('k')).toBeNull();
  });

  it('does not share entries between instances', async () => {
    const a = storeWithClock().store;
    const b = storeWithClock().store;
    await a.set('k', 'v', 60);
    expect(await b.get('k')).toBeNull();
  });
});
