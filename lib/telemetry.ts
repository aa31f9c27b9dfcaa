import type { CredentialKind } from './token/record.ts';

/** Where a served value came from (reported per request, as data). */
export type Source = 'memory' | 'cache' | 'wechat' | 'peer' | 'stale';

/** Why the service called WeChat. */
export type FetchReason =
  | 'missing'
  | 'window'
  | 'expired'
  | 'passive'
  | 'schedule'
  | 'outage'
  | 'ticket_retry';

/**
 * What the core reports about its work; the handler turns it into log lines and metrics. Never
 * receives a secret or a full token.
 */
export interface Telemetry {
  upstreamCall(upstream: string, appid: string, reason: FetchReason): void;
  upstreamError(upstream: string, appid: string, code: string, errcode: number | undefined): void;
  upstreamRetry(upstream: string, reason: string, attempt: number): void;
  lockWait(
    kind: CredentialKind,
    appid: string,
    waitedMs: number,
    outcome: 'peer' | 'takeover' | 'timeout',
  ): void;
  staleServed(kind: CredentialKind, appid: string, reason: string): void;
  warn(message: string, attributes: Record<string, unknown>): void;
}
