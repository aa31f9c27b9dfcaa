import { randomUUID } from 'node:crypto';
import { type Clock, realSleep, type Sleep, systemClock } from '../lib/clock.ts';
import { type Config, loadConfig } from '../lib/config.ts';
import { MemcachedStore } from '../lib/memcached/memcached-store.ts';
import { MemoryStore } from '../lib/memory/memory-store.ts';
import { type CredentialsProvider, StaticCredentials } from '../lib/secrets/credentials.ts';
import { type ReadSecret, SecretsManagerCredentials, sdkReadSecret } from '../lib/secrets/secrets-manager.ts';
import type { KeyValueStore } from '../lib/store.ts';
import { TokenService } from '../lib/token/service.ts';
import { type FetchLike, WeChatClient } from '../lib/wechat/client.ts';
import { createObservability, type Observability } from './observe.ts';

/** What the handler needs, built once per container on first use (never at import). */
export interface Container {
  config: Config;
  clock: Clock;
  store: KeyValueStore;
  credentials: CredentialsProvider;
  service: TokenService;
  observability: Observability;
}

/** Seams for harnesses: everything defaults to the real thing. */
export interface HandlerOptions {
  env?: Record<string, string | undefined>;
  clock?: Clock;
  sleep?: Sleep;
  fetch?: FetchLike;
  readSecret?: ReadSecret;
}

export function buildContainer(options: HandlerOptions): Container {
  const config = loadConfig(options.env ?? process.env);
  const clock = options.clock ?? systemClock;
  const sleep = options.sleep ?? realSleep;
  const observability = createObservability(config.logLevel);
  const { logger, telemetry } = observability;
  const store: KeyValueStore = config.memcachedServers
    ? new MemcachedStore({
        servers: config.memcachedServers,
        timeoutMs: config.memcachedTimeoutMs,
        onDiagnostic: (message) => logger.debug('memcached client', { detail: message }),
      })
    : new MemoryStore(clock);
  const source = config.credentials;
  const credentials: CredentialsProvider =
    source.kind === 'secrets_manager'
      ? new SecretsManagerCredentials({
          secretId: source.secretId,
          cacheSeconds: config.secretCacheSeconds,
          clock,
          readSecret: options.readSecret ?? sdkReadSecret(),
        })
      : new StaticCredentials(
          { appid: source.appid, secret: source.secret, tokenApi: source.tokenApi, tickets: source.tickets },
          source.clientKey,
        );
  const wechat = new WeChatClient({
    baseUrl: config.wechatApiBaseUrl,
    attemptTimeoutMs: config.upstreamTimeoutMs,
    clock,
    sleep,
    ...(options.fetch ? { fetch: options.fetch } : {}),
    onRetry: (endpoint, reason, attempt) => telemetry.upstreamRetry(endpoint, reason, attempt),
  });
  const service = new TokenService({
    store,
    credentials,
    wechat,
    clock,
    sleep,
    telemetry,
    settings: config,
    instanceId: randomUUID().slice(0, 8),
  });
  return { config, clock, store, credentials, service, observability };
}
