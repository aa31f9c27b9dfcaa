/**
 * What the handler needs, built once per container on the first invocation that needs it (importing
 * the handler does no I/O) and reused by every later invocation. Tests and harnesses pass overrides;
 * everything defaults to the real thing, configured from the environment.
 */
import { randomUUID } from 'node:crypto';
import { systemClock } from '../lib/clock.ts';
import { type Config, loadConfig } from '../lib/config.ts';
import type { Clock, KeyValueStore, SecretSource, WeChatApi } from '../lib/ports.ts';
import { StaticCredentials } from '../lib/secrets/credentials.ts';
import { type ReadSecret, SecretsManagerCredentials, sdkReadSecret } from '../lib/secrets/secrets-manager.ts';
import { MemcachedStore } from '../lib/store/memcached.ts';
import { MemoryStore } from '../lib/store/memory.ts';
import { EventLog } from '../lib/telemetry/log.ts';
import { TokenService } from '../lib/token/service.ts';
import { type FetchLike, WeChatClient } from '../lib/wechat/client.ts';

export interface Container {
  config: Config;
  clock: Clock;
  store: KeyValueStore;
  secrets: SecretSource;
  service: TokenService;
  log: EventLog;
}

/** Stand-ins for tests and harnesses. */
export interface ContainerOverrides {
  /** The environment to configure from (default: process.env). */
  env?: Record<string, string | undefined>;
  clock?: Clock;
  /** Shared state instead of the one MEMCACHED_SERVERS names. */
  store?: KeyValueStore;
  /** The credentials instead of Secrets Manager or the environment. */
  secrets?: SecretSource;
  /** The Secrets Manager call (the real SDK by default). */
  readSecret?: ReadSecret;
  /** WeChat instead of WECHAT_API_BASE_URL. */
  wechat?: WeChatApi;
  /** The HTTP call the WeChat client makes. */
  fetch?: FetchLike;
  /** Where log lines go (default: stdout). */
  writeLog?: (line: string) => void;
}

/** Throws `config_invalid` naming the variable to fix. */
export function buildContainer(overrides: ContainerOverrides = {}): Container {
  const config = loadConfig(overrides.env);
  const clock = overrides.clock ?? systemClock;
  const log = new EventLog({
    level: config.logLevel,
    now: () => clock.now(),
    ...(overrides.writeLog ? { write: overrides.writeLog } : {}),
  });
  const store = overrides.store ?? buildStore(config, clock, log);
  const secrets = overrides.secrets ?? buildSecrets(config, clock, log, overrides.readSecret);
  const wechat =
    overrides.wechat ??
    new WeChatClient({
      baseUrl: config.wechatApiBaseUrl,
      attemptTimeoutMs: config.upstreamTimeoutMs,
      clock,
      ...(overrides.fetch ? { fetch: overrides.fetch } : {}),
      onRetry: (upstream, reason, attempt) =>
        log.emit({ event: 'upstream.retry', upstream, reason, attempt }),
    });
  const service = new TokenService({
    store,
    secrets,
    wechat,
    clock,
    telemetry: log,
    settings: config,
    instanceId: randomUUID().slice(0, 8),
  });
  return { config, clock, store, secrets, service, log };
}

function buildStore(config: Config, clock: Clock, log: EventLog): KeyValueStore {
  if (!config.memcachedServers) return new MemoryStore(clock);
  return new MemcachedStore({
    servers: config.memcachedServers,
    timeoutMs: config.memcachedTimeoutMs,
    onDiagnostic: (detail) => log.emit({ event: 'cache.diagnostic', detail }),
  });
}

function buildSecrets(
  config: Config,
  clock: Clock,
  log: EventLog,
  readSecret: ReadSecret | undefined,
): SecretSource {
  const source = config.credentials;
  if (source.kind === 'secrets_manager') {
    return new SecretsManagerCredentials({
      secretId: source.secretId,
      cacheSeconds: config.secretCacheSeconds,
      rereadSeconds: config.secretRereadSeconds,
      graceSeconds: config.secretGraceSeconds,
      telemetry: log,
      clock,
      readSecret: readSecret ?? sdkReadSecret(),
    });
  }
  return new StaticCredentials(
    { appid: source.appid, secret: source.secret, tokenApi: source.tokenApi, tickets: source.tickets },
    source.clientKey,
  );
}
