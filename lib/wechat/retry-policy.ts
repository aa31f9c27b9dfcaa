/**
 * How often and how far apart one WeChat call is attempted: the numbers the client's retry loop
 * uses (lib/wechat/client.ts), and from them the longest one call can take, which the refresh lock's
 * lease must cover (lib/config.ts).
 */

/** Attempts of one call: the first and its retries (on -1, 5xx and network errors). */
export const UPSTREAM_MAX_ATTEMPTS = 4;
/** The backoff before retry n (1-based) is a jittered fraction of `base × 2^(n−1)` ms. */
export const UPSTREAM_BACKOFF_BASE_MS = 100;

/** The longest one upstream call can take: every attempt timing out, and every backoff at its maximum. */
export function worstUpstreamCallMs(attemptTimeoutMs: number): number {
  let totalMs = UPSTREAM_MAX_ATTEMPTS * attemptTimeoutMs;
  for (let retry = 1; retry < UPSTREAM_MAX_ATTEMPTS; retry++) {
    totalMs += UPSTREAM_BACKOFF_BASE_MS * 2 ** (retry - 1);
  }
  return totalMs;
}
