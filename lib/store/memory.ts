import type { Clock, KeyValueStore } from '../ports.ts';
import { assertValidKey, assertValidTtl } from './validate.ts';

/**
 * In-process {@link KeyValueStore}: for local runs (no MEMCACHED_SERVERS) and unit tests. Same
 * semantics as the Memcached adapter, checked by the shared contract suite; not shared across
 * processes, so it gives no cross-instance guarantees.
 */
export class MemoryStore implements KeyValueStore {
  readonly #entries = new Map<string, { value: string; expiresAtMs: number }>();
  readonly #clock: Pick<Clock, 'now'>;

  constructor(clock: Pick<Clock, 'now'>) {
    this.#clock = clock;
  }

  async get(key: string): Promise<string | null> {
    assertValidKey(key);
    return this.#live(key)?.value ?? null;
  }

  async set(key: string, value: string, ttlSeconds: number): Promise<void> {
    assertValidKey(key);
    assertValidTtl(ttlSeconds);
    this.#entries.set(key, { value, expiresAtMs: this.#clock.now() + ttlSeconds * 1000 });
  }

  async add(key: string, value: string, ttlSeconds: number): Promise<boolean> {
    assertValidKey(key);
    assertValidTtl(ttlSeconds);
    if (this.#live(key)) return false;
    this.#entries.set(key, { value, expiresAtMs: this.#clock.now() + ttlSeconds * 1000 });
    return true;
  }

  async delete(key: string): Promise<void> {
    assertValidKey(key);
    this.#entries.delete(key);
  }

  async increment(key: string, ttlSeconds: number): Promise<number> {
    assertValidKey(key);
    assertValidTtl(ttlSeconds);
    const entry = this.#live(key);
    if (!entry) {
      this.#entries.set(key, { value: '1', expiresAtMs: this.#clock.now() + ttlSeconds * 1000 });
      return 1;
    }
    const next = (Number.parseInt(entry.value, 10) || 0) + 1;
    entry.value = String(next);
    return next;
  }

  async close(): Promise<void> {
    this.#entries.clear();
  }

  #live(key: string): { value: string; expiresAtMs: number } | undefined {
    const entry = this.#entries.get(key);
    if (entry && entry.expiresAtMs <= this.#clock.now()) {
      this.#entries.delete(key);
      return undefined;
    }
    return entry;
  }
}
