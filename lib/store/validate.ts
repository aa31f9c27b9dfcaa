/** Checks every adapter of the KeyValueStore port applies before talking to its backend. */

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
