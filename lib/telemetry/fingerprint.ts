import { createHash } from 'node:crypto';

let lastValue: string | undefined;
let lastFingerprint = '';

/**
 * A short, non-reversible identifier of a token or ticket for logs: the first 10 hex digits of its
 * SHA-256. The last one is remembered: consecutive hits serve the same value.
 */
export function fingerprint(value: string): string {
  if (value !== lastValue) {
    lastFingerprint = createHash('sha256').update(value).digest('hex').slice(0, 10);
    lastValue = value;
  }
  return lastFingerprint;
}
