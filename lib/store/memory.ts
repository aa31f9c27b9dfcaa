import type { Clock, KeyValueStore } from '../ports.ts';
import { assertValidKey, assertValidTtl } from './validate.ts';

interface Entry {
  value: string;
  expiresAtMs: number;
  version: number;
}

/**
 * In-process {@link KeyValueStore}: for local runs (no MEMCACHED_SERVERS) and unit tests. Same
 * semantics as the Memcached adapter, checked by the shared contract suite; not shared across
 * processes, so it gives no cross-instance guarantees.
 */
export class MemoryStore implements KeyValueStore {
  readonly #entries = new Map<string, Entry>();
  /** Versions, as Memcached's CAS uniques: every write takes the next one. */
  #version = 0;
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
    this.#write(key, value, ttlSeconds);
  }

  async add(key: string, value: string, ttlSeconds: number): Promise<boolean> {
    assertValidKey(key);
    assertValidTtl(ttlSeconds);
    if (this.#live(key)) return false;
    this.#write(key, value, ttlSeconds);
    return true;
  }

  async delete(key: string): Promise<void> {
    assertValidKey(key);
    this.#entries.delete(key);
  }

  async gets(key: string): Promise<{ value: string; cas: string } | null> {
    assertValidKey(key);
    const entry = this.#live(key);
    return entry ? { value: entry.value, cas: String(entry.version) } : null;
  }

  async deleteIfUnchanged(key: string, cas: string): Promise<boolean> {
    assertValidKey(key);
    const entry = this.#live(key);
    if (!entry || String(entry.version) !== cas) return false;
    this.#entries.delete(key);
    return true;
  }

  async increment(key: string, ttlSeconds: number): Promise<number> {
    assertValidKey(key);
    assertValidTtl(ttlSeconds);
    const entry = this.#live(key);
    if (!entry) {
      this.#write(key, '1', ttlSeconds);
      return 1;
    }
    const next = (Number.parseInt(entry.value, 10) || 0) + 1;
    entry.value = String(next);
    entry.version = ++this.#version;
    return next;
  }

  async close(): Promise<void> {
    this.#entries.clear();
  }

  #write(key: string, value: string, ttlSeconds: number): void {
    this.#entries.set(key, {
      value,
      expiresAtMs: this.#clock.now() + ttlSeconds * 1000,
      version: ++this.#version,
    });
  }

  #live(key: string): Entry | undefined {
    const entry = this.#entries.get(key);
    if (entry && entry.expiresAtMs <= this.#clock.now()) {
      this.#entries.delete(key);
      return undefined;
    }
    return entry;
  }
}
