/** What the token service is built from and the vocabulary of its algorithm (service.ts). */
import type { CacheOutagePolicy, MissingRecordPolicy } from '../config.ts';
import type { FetchReason, TokenKind } from '../domain.ts';
import type { Clock, KeyValueStore, SecretSource, Telemetry, WeChatApi } from '../ports.ts';
import type { LifetimeSettings } from './lifetime.ts';

export interface TokenServiceSettings extends LifetimeSettings {
  cacheKeyPrefix: string;
  memoryCacheSeconds: number;
  failureMemorySeconds: number;
  cacheOutagePolicy: CacheOutagePolicy;
  missingRecordPolicy: MissingRecordPolicy;
  /** How often the schedule runs: user requests leave it this head start on each refresh. */
  scheduleIntervalSeconds: number;
  /** The schedule's getApiQuota checks: at most one per app per this many seconds (0: none). */
  quotaCheckIntervalSeconds: number;
}

export interface TokenServiceDeps {
  store: KeyValueStore;
  secrets: SecretSource;
  wechat: WeChatApi;
  clock: Clock;
  telemetry: Telemetry;
  settings: TokenServiceSettings;
  /** Identifies this instance in records it writes. */
  instanceId: string;
  /** Per-app jitter in [0, 1); defaults to a hash of kind and appid (the same on every instance). */
  jitter?: (kind: TokenKind, appid: string) => number;
}

/** What the schedule did for one (kind, appid). */
export type ScheduledOutcome = 'fresh' | 'refreshed' | 'in_progress' | 'served_stale';

/** How a refresh under the lock was asked for. */
export interface RefreshMode {
  reason: FetchReason;
  /** Passive refresh: the generation the reported token belongs to; any later one answers it. */
  replaceGeneration?: number;
  /** Passive refresh: the reported value, never the answer. */
  avoid?: string;
}
