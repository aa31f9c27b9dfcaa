/**
 * The port every shared-state adapter implements: the few Memcached operations the service uses.
 * Values are strings (JSON written by the token layer); TTLs are whole seconds, at most 30 days
 * (Memcached reads a larger number as a Unix time). Adapters throw `cache_unavailable` when the
 * backend cannot answer; absence is `null`, never an error.
 */
export interface KeyValueStore {
  /** The value, or null when the key is absent or expired. */
  get(key: string): Promise<string | null>;
  /** Stores unconditionally. */
  set(key: string, value: string, ttlSeconds: number): Promise<void>;
  /** Stores only when the key is absent: true when stored, false when the key already existed. */
  add(key: string, value: string, ttlSeconds: number): Promise<boolean>;
  /** Removes the key; absent keys are not an error. */
  delete(key: string): Promise<void>;
  /**
   * Atomically adds 1 and returns the new value; an absent key starts at 1 and lives `ttlSeconds`
   * (the TTL is set only when the counter is created).
   */
  increment(key: string, ttlSeconds: number): Promise<number>;
  /** Releases connections. */
  close(): Promise<void>;
}

/** Longest TTL Memcached takes as a duration (30 days); longer values are read as Unix times. */
export const MAX_TTL_SECONDS = 30 * 24 * 3600;

/** Memcached keys: at most 250 bytes, no whitespace or control characters. */
export function assertValidKey(key: string): void {
  if (key.length === 0 || key.length > 250 || !/^[\x21-\x7e]+$/.test(key)) {
    throw new Error(`invalid cache key of length ${key.length}`);
  }
}

export function assertValidTtl(ttlSeconds: number): void {
  if (!Number.isInteger(ttlSeconds) || ttlSeconds < 1 || ttlSeconds > MAX_TTL_SECONDS) {
    throw new Error(`invalid TTL ${ttlSeconds}: whole seconds from 1 to ${MAX_TTL_SECONDS}`);
  }
}
