/**
 * Lifetimes: when a record should be refreshed, and how long a served value is *guaranteed* to stay
 * valid — the `expires_in` promised to callers.
 *
 * Why the promise is not WeChat's nominal expiry. With the classic endpoint, a refresh at time R
 * leaves the previous token alive until R + 300 s and kills the one before it at once (wechat-facts
 * §1). So a token T dies at the earliest of:
 *   - its natural expiry;
 *   - the first refresh after it (R1) + the 300 s overlap;
 *   - the second refresh after it (R2), which kills it at once.
 * This service is the only fetcher, so it knows the earliest moment it may refresh:
 *   - proactively: not before the record's `refreshAtMs` (classic only: stable normal calls and
 *     ticket fetches invalidate nothing);
 *   - passively: not before T is `PASSIVE_REFRESH_MIN_AGE_SECONDS` old — and not before the moment
 *     T was last confirmed current, less one lock lease (a refresh may be in flight, issued by WeChat
 *     but not yet written back, for at most one lease).
 * and R2 cannot come sooner than min(min age, half a token life) after R1. Hence
 *
 *   guaranteed(T) = min(natural expiry, earliest(R1) + min(300 s, R2 − R1 lower bound))
 *
 * A caller that keeps T until `now + expires_in` therefore never holds a token this service killed.
 * With the defaults (min age 300 s, window 900 s, lease 10 s) a classic token is promised 290–600 s
 * (600 s right after its fetch, 290 s once it is older than the min age).
 * A token killed by someone outside the service is beyond any promise: that is what passive refresh
 * is for.
 *
 * Record loss. Memcached can lose a record at any moment (eviction, a restart, `flush_all`, a replaced
 * node), and a fresh cache looks exactly like a flushed one. If the next fetch were classic, it would
 * kill the last token T1 at once or 300 s later whatever it was promised. So a classic app whose record
 * is missing is served a token from the stable endpoint, which invalidates nothing, and its next
 * classic fetch R waits until `classicResumeAtMs(D)`, D being when the loss was found:
 *   - every promise about T1 was made by an instance that confirmed T1 at some C ≤ D, and is at most
 *     max(fetched + min age, C − lease) + 300 s ≤ D + min age + 300 s (the bound above, passive on);
 *     R kills T1 at R + 300 s, so R ≥ D + min age keeps every one;
 *   - the token T0 before T1 was promised at most E0 + min(300 s, min age) ≤ D + min(300 s, min age),
 *     E0 being no later than T1's fetch; R kills T0 at once, and R ≥ D + min age ≥ that bound;
 *   - with passive refresh off the bound on T1 is its natural expiry, at most D + 7200 s: R waits
 *     D + 7200 s − 300 s.
 * A second loss before R finds the stable record missing and starts over from its own D: still safe.
 * Stable tokens (normal mode) and tickets invalidate nothing: a loss does not change their promises,
 * except that a ticket seen with no record has an unknown age (see `ticketPromiseUntilMs`).
 *
 * WeCom (`gettoken`, origin `wecom`). What WeCom documents (wechat-facts §6): a token lives the
 * `expires_in` it came with (normally 7200 s); WeCom may invalidate tokens early for operational
 * reasons, and callers must then fetch again. What it no longer documents: the older page said a
 * fetch within the token's life returns the same token; the current page dropped that sentence and
 * says nothing about what a second fetch does to the first token — neither that it survives nor
 * that it dies, and no overlap. So:
 *   - this service's own scheduled fetch, from `refreshAtMs` on, may hand out a new token and (being
 *     undocumented) may end the old one at once: nothing is promised past `refreshAtMs`;
 *   - an early invalidation by WeCom can come at any moment and is beyond any promise, like a token
 *     killed by an outside fetcher: consumers report it (40014/42001) and passive refresh replaces
 *     it, once, under the lock (compare-and-refresh);
 *   - the other fetches this service makes (a passive refresh of a reported token, a fetch after a
 *     record loss — WeCom has no stable endpoint to fall back to, so a missing record is fetched from
 *     gettoken at once) are rare and answer a token already reported dead or no longer known; they
 *     are not assumed to kill a live token, since nothing documents that they do. So no promise
 *     rests on PASSIVE_REFRESH_MIN_AGE_SECONDS, and it does not apply: a token WeCom revokes minutes
 *     after its fetch is replaced on the first report (the daily budget still bounds reports).
 * Hence guaranteed(T) = min(natural expiry, refreshAtMs): with the defaults a 7200-s token is
 * promised up to about 6300 s, then the schedule replaces it. If WeCom hands back the token the
 * record already holds (the older documented behaviour), asking again before it expires gains
 * nothing: the record then refreshes at its expiry (record.ts).
 *
 * WeCom tickets (enterprise `jsapi` and app `agent_config`) are counted like WeChat's: at most 400
 * fetches an hour per corp and 100 per app (both kinds together, to be safe). One fetch per ticket
 * life keeps far below that; a ticket of unknown age is asked for again at most every
 * {@link WECOM_TICKET_RECHECK_MS}, so an app with both tickets makes at most 24 such calls an hour.
 */
import type { Origin, TokenRecord } from '../domain.ts';

/** WeChat keeps the previous token valid this long after a refresh (classic, and stable force refresh). */
export const OVERLAP_MS = 300_000;
/** Stable token: WeChat itself rotates in the last 300 s, so a refresh inside 240 s gets a new token. */
const STABLE_WINDOW_CAP_MS = 240_000;
/** Stable force refreshes closer than this do nothing (WeChat's rule). */
export const STABLE_FORCE_SPACING_MS = 30_000;

export interface LifetimeSettings {
  refreshWindowSeconds: number;
  passiveRefreshMinAgeSeconds: number;
  /** 0 disables passive refresh, which then cannot shorten a promise. */
  passiveRefreshDailyBudget: number;
  lockLeaseSeconds: number;
}

/**
 * Natural expiry of a grant: counted from when the request was sent (WeChat counts from its answer,
 * which is later), less a clock-skew margin of 10 s or a tenth of the life for short-lived test tokens.
 */
export function naturalExpiryMs(requestSentAtMs: number, expiresInSeconds: number): number {
  const lifeMs = expiresInSeconds * 1000;
  return requestSentAtMs + lifeMs - Math.min(10_000, Math.floor(lifeMs / 10));
}

/**
 * The refresh window actually used: the configured one, scaled down to half a token's life (so a
 * 20-second token is refreshed about every 10 s, not on every request), and for stable tokens kept
 * inside the last 240 s, where WeChat hands out a new token instead of the same one.
 */
export function effectiveWindowMs(lifeMs: number, origin: Origin, settings: LifetimeSettings): number {
  let window = Math.min(settings.refreshWindowSeconds * 1000, Math.floor(lifeMs / 2));
  if (origin === 'stable') window = Math.min(window, STABLE_WINDOW_CAP_MS);
  return window;
}

/**
 * When a refresh of a new value may start: `expiresAt − window`, moved later by up to a quarter of
 * the window by a per-app jitter in [0, 1) so that apps do not all refresh on the same tick.
 */
export function refreshAtMs(
  fetchedAtMs: number,
  expiresAtMs: number,
  origin: Origin,
  jitter: number,
  settings: LifetimeSettings,
): number {
  const window = effectiveWindowMs(expiresAtMs - fetchedAtMs, origin, settings);
  return expiresAtMs - window + Math.floor(window * 0.25 * jitter);
}

/**
 * The moment until which `record` is guaranteed valid, given that it was confirmed to be the
 * current record at `confirmedAtMs` (read from Memcached, or written by this instance).
 */
export function guaranteedUntilMs(
  record: TokenRecord,
  confirmedAtMs: number,
  settings: LifetimeSettings,
): number {
  // Re-fetching a ticket does not invalidate the previous one; a ticket of unknown age is promised nothing.
  if (record.origin === 'ticket') return record.ageUnknown ? record.fetchedAtMs : record.expiresAtMs;
  // WeCom: nothing past this service's next scheduled fetch (see the header).
  if (record.origin === 'wecom') return Math.min(record.expiresAtMs, record.refreshAtMs);

  const lifeMs = record.expiresAtMs - record.fetchedAtMs;
  const passiveEnabled = settings.passiveRefreshDailyBudget > 0;
  const minAgeMs = settings.passiveRefreshMinAgeSeconds * 1000;

  let earliestRefreshMs = Number.POSITIVE_INFINITY;
  if (passiveEnabled) {
    earliestRefreshMs = Math.max(
      record.fetchedAtMs + minAgeMs,
      confirmedAtMs - settings.lockLeaseSeconds * 1000,
    );
  }
  if (record.origin === 'classic') earliestRefreshMs = Math.min(earliestRefreshMs, record.refreshAtMs);

  // After the first refresh the token lives the overlap, unless a second refresh comes sooner: for
  // classic, the successor's proactive refresh (half a life on) or a passive one (min age on); for
  // stable, only a second force refresh, which WeChat spaces at least 30 s.
  let secondRefreshGapMs: number;
  if (record.origin === 'stable') {
    secondRefreshGapMs = passiveEnabled
      ? Math.max(minAgeMs, STABLE_FORCE_SPACING_MS)
      : Number.POSITIVE_INFINITY;
  } else {
    secondRefreshGapMs = Math.floor(lifeMs / 2);
    if (passiveEnabled) secondRefreshGapMs = Math.min(secondRefreshGapMs, minAgeMs);
  }
  const survivalMs = Math.min(OVERLAP_MS, secondRefreshGapMs);

  return Math.min(record.expiresAtMs, earliestRefreshMs + survivalMs);
}

/**
 * How old a reported token must be before a passive refresh replaces it: the min age, on which the
 * promises of WeChat's tokens rest; none for WeCom's, whose promises do not (see the header).
 */
export function passiveMinAgeMs(record: TokenRecord, settings: LifetimeSettings): number {
  return record.origin === 'wecom' ? 0 : settings.passiveRefreshMinAgeSeconds * 1000;
}

/** WeChat's longest token life (wechat-facts §1: `expires_in` is "within 7200 s"). */
const WECHAT_MAX_LIFE_MS = 7_200_000;

/** The earliest moment a classic fetch may follow a record loss found at `detectedAtMs` (see the header). */
export function classicResumeAtMs(detectedAtMs: number, settings: LifetimeSettings): number {
  if (settings.passiveRefreshDailyBudget > 0)
    return detectedAtMs + settings.passiveRefreshMinAgeSeconds * 1000;
  return detectedAtMs + WECHAT_MAX_LIFE_MS - OVERLAP_MS;
}

/** A WeCom ticket of unknown age is asked for again at most this often (WeCom's hourly limits, see the header). */
export const WECOM_TICKET_RECHECK_MS = 300_000;

/**
 * How often a ticket of unknown age is asked for again: until WeChat hands out a different ticket,
 * whose age is then bounded by the previous answer. Shorter for short-lived test tickets; for WeCom
 * at most every {@link WECOM_TICKET_RECHECK_MS}.
 */
export function unknownAgeRecheckMs(lifeMs: number, wecom = false): number {
  const capMs = wecom ? WECOM_TICKET_RECHECK_MS : 60_000;
  return Math.max(1000, Math.min(capMs, Math.floor(lifeMs / 10)));
}

/**
 * When a request refreshes inline: a little after the schedule may (one schedule interval, at most
 * half the remaining window), so that with steady traffic the schedule, not a user, waits on WeChat.
 * Promises do not change: they are bounded by `refreshAtMs`, the earliest refresh of either kind.
 */
export function userRefreshAtMs(record: TokenRecord, settings: { scheduleIntervalSeconds: number }): number {
  // A ticket of unknown age is asked for again on time: how soon it dies is not known.
  if (record.ageUnknown) return record.refreshAtMs;
  const headStartMs = Math.min(
    settings.scheduleIntervalSeconds * 1000,
    Math.floor((record.expiresAtMs - record.refreshAtMs) / 2),
  );
  return record.refreshAtMs + Math.max(0, headStartMs);
}

/** Whole seconds from `nowMs` to `untilMs`, never negative. */
export function secondsUntil(untilMs: number, nowMs: number): number {
  return Math.max(0, Math.floor((untilMs - nowMs) / 1000));
}
