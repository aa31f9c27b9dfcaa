/**
 * The closed event vocabulary. Every log line carries one `event` name from here; tests, the
 * benchmark, metric filters and alarms match these names, never message text. Each event has one
 * level and, where it is counted, the CloudWatch metric (EMF) its line carries.
 *
 * | event                | level | metric (dimensions)                       | when                                    |
 * |----------------------|-------|-------------------------------------------|-----------------------------------------|
 * | invocation           | INFO¹ | Served (source), ServerErrors, ClientErrors | once per invocation: the access log   |
 * | config.invalid       | ERROR | — (a Logs metric filter counts it)        | the configuration or secret is invalid  |
 * | upstream.fetch       | INFO  | UpstreamFetches (upstream, reason)        | a WeChat call is about to be made       |
 * | upstream.error       | WARN  | UpstreamErrors (upstream, errcode)        | a WeChat call failed                    |
 * | upstream.retry       | INFO  | UpstreamRetries (upstream)                | a WeChat call is repeated after backoff |
 * | lock.wait            | WARN  | LockWaits, LockWaitTime (outcome)         | a request waited for a peer's refresh   |
 * | token.stale_served   | WARN  | StaleServed (kind)                        | a refresh failed; the last value served |
 * | record.invalid       | WARN  | —                                         | a cache value is not a valid record     |
 * | record.unshared      | WARN  | —                                         | a new value could not be written        |
 * | record.written_back  | WARN  | —                                         | a held value was put back in the cache  |
 * | cache.outage         | WARN  | CacheOutages                              | a request is served without the cache   |
 * | cache.diagnostic     | DEBUG | —                                         | the Memcached client's own diagnostics  |
 * | secrets.stale_served | WARN  | SecretStaleServed                         | the secret could not be read again; the last good copy is used |
 * | config.warning       | WARN  | —                                         | at cold start: a setting is valid but costs something |
 * | quota.probe          | INFO  | QuotaProbes (upstream)                    | a call goes to WeChat through an open quota breaker |
 * | quota.breaker_closed | WARN  | —                                         | a quota breaker closed (probe succeeded, or clear_quota) |
 * | quota.cleared        | WARN  | QuotaResets                               | clear_quota used one of WeChat's 10 monthly resets |
 * | quota.checked        | INFO  | QuotaUsed, QuotaLimit, QuotaRemaining (upstream) | getApiQuota answered for an app   |
 * | quota.warning        | WARN  | QuotaWarnings (upstream)                  | 80 % of an endpoint's daily quota is used |
 * | quota.outside_fetcher| ERROR | OutsideFetcherSuspected                   | WeChat counted more token calls than the service made, or a token was killed early |
 *
 * ¹ WARN for a 5xx answer, ERROR for an internal error.
 */
import type { ApiEndpoint, FetchReason, TokenKind } from '../domain.ts';

export type LogLevel = 'DEBUG' | 'INFO' | 'WARN' | 'ERROR';

/** What the core reports (through the {@link Telemetry} port). Never a secret or a full token. */
export type CoreEvent =
  | { event: 'upstream.fetch'; upstream: ApiEndpoint; kind: TokenKind; appid: string; reason: FetchReason }
  | {
      event: 'upstream.error';
      upstream: ApiEndpoint;
      kind: TokenKind;
      appid: string;
      code: string;
      errcode: number | undefined;
    }
  | { event: 'upstream.retry'; upstream: ApiEndpoint; reason: string; attempt: number }
  | {
      event: 'lock.wait';
      kind: TokenKind;
      appid: string;
      waitedMs: number;
      outcome: 'peer' | 'takeover' | 'timeout';
    }
  | {
      event: 'token.stale_served';
      kind: TokenKind;
      appid: string;
      code: string;
      errcode?: number | undefined;
    }
  | { event: 'record.invalid'; kind: TokenKind; appid: string }
  | { event: 'record.unshared'; kind: TokenKind; appid: string }
  | { event: 'record.written_back'; kind: TokenKind; appid: string }
  | { event: 'cache.outage'; kind: TokenKind; appid: string; detail: string }
  | { event: 'cache.diagnostic'; detail: string }
  | {
      event: 'quota.probe';
      upstream: ApiEndpoint;
      /** The guarded upstream: token, stable_token, ticket_jsapi or ticket_wx_card. */
      breaker: string;
      appid: string;
    }
  | { event: 'quota.breaker_closed'; breaker: string; appid: string; by: 'probe' | 'clear_quota' }
  | { event: 'quota.cleared'; appid: string }
  | {
      event: 'quota.checked';
      appid: string;
      /** `token` (/cgi-bin/token) or `ticket` (/cgi-bin/ticket/getticket). */
      upstream: 'token' | 'ticket';
      used: number;
      limit: number;
      remain: number;
      /** The service's own calls of the same day; null when the cache could not say. */
      serviceCount: number | null;
    }
  | {
      event: 'quota.warning';
      appid: string;
      upstream: 'token' | 'ticket';
      used: number;
      limit: number;
      detail: string;
    }
  | {
      event: 'quota.outside_fetcher';
      appid: string;
      /** `quota_count`: WeChat's count against the service's; `early_report`: a token killed early. */
      evidence: 'quota_count' | 'early_report';
      wechatCount?: number;
      serviceCount?: number;
      /** Calls WeChat counted today before the service's counters started (a late start: not suspected). */
      uncounted?: number;
      tokenAgeSeconds?: number;
      secondsLeft?: number;
      /** What it means and what to do. */
      detail: string;
    }
  | {
      event: 'config.warning';
      /** The environment variable. */
      variable: string;
      value: number;
      /** What the value costs, in words. */
      detail: string;
      /** PASSIVE_REFRESH_MIN_AGE_SECONDS: the promise of a classic token older than the min age. */
      promiseSeconds?: number;
    }
  | {
      event: 'secrets.stale_served';
      /** Set for an app's own secret (WECHAT_SECRET_PREFIX + appid); absent for the list. */
      appid?: string;
      /** The failed read's error code. */
      code: string;
      /** How old the copy in use is. */
      ageSeconds: number;
      /** How much longer it may be used (SECRET_CACHE_SECONDS + SECRET_GRACE_SECONDS after its read). */
      graceLeftSeconds: number;
    };

export type EventName = CoreEvent['event'] | 'invocation' | 'config.invalid';

/** The level of each core event. */
export const EVENT_LEVEL: Record<CoreEvent['event'], LogLevel> = {
  'upstream.fetch': 'INFO',
  'upstream.error': 'WARN',
  'upstream.retry': 'INFO',
  'lock.wait': 'WARN',
  'token.stale_served': 'WARN',
  'record.invalid': 'WARN',
  'record.unshared': 'WARN',
  'record.written_back': 'WARN',
  'cache.outage': 'WARN',
  'cache.diagnostic': 'DEBUG',
  'secrets.stale_served': 'WARN',
  'config.warning': 'WARN',
  'quota.probe': 'INFO',
  'quota.breaker_closed': 'WARN',
  'quota.cleared': 'WARN',
  'quota.checked': 'INFO',
  'quota.warning': 'WARN',
  'quota.outside_fetcher': 'ERROR',
};
