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
import { ClusterStore } from '../lib/store/cluster.ts';
import { type NodeAddress, parseHostPort, type TlsSettings } from '../lib/store/connection.ts';
import { ConfigEndpoint } from '../lib/store/discovery.ts';
import { MemcachedStore } from '../lib/store/memcached.ts';
import { TextMemcachedStore } from '../lib/store/memcached-text.ts';
import { nodeSocketFactory } from '../lib/store/memjs-socket.ts';
import { MemoryStore } from '../lib/store/memory.ts';
import { EventLog } from '../lib/telemetry/log.ts';
import { guaranteedUntilMs, OVERLAP_MS } from '../lib/token/lifetime.ts';
import { TokenService } from '../lib/token/service.ts';
import { WeChatClient } from '../lib/wechat/client.ts';
import type { HttpTransport } from '../lib/wechat/transport.ts';

export interface Container {
  config: Config;
  clock: Clock;
  store: KeyValueStore;
  /** What /healthz shows about the cache (counts and modes, never host names). */
  cacheTopology(): CacheTopologyReport;
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
  /** The WeChat client's HTTP exchange (default: undici, loaded on the first upstream call). */
  transport?: HttpTransport;
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
  warnAboutCosts(config, log);
  const built = overrides.store
    ? { store: overrides.store, topology: () => describeOverride(config) }
    : buildStore(config, clock, log);
  const { store } = built;
  const secrets = overrides.secrets ?? buildSecrets(config, clock, log, overrides.readSecret);
  const wechat =
    overrides.wechat ??
    new WeChatClient({
      baseUrl: config.wechatApiBaseUrl,
      wecomBaseUrl: config.wecomApiBaseUrl,
      attemptTimeoutMs: config.upstreamTimeoutMs,
      clock,
      ...(overrides.transport ? { transport: overrides.transport } : {}),
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
  return { config, clock, store, cacheTopology: built.topology, secrets, service, log };
}

/**
 * One warning line at cold start for a valid setting that weakens a promise. A passive refresh may
 * come PASSIVE_REFRESH_MIN_AGE_SECONDS after a classic token's fetch, and kills it 300 s later at
 * the latest (sooner if a second one follows): below 300 s the min age, not WeChat's overlap,
 * bounds every promise.
 */
function warnAboutCosts(config: Config, log: EventLog): void {
  const minAgeSeconds = config.passiveRefreshMinAgeSeconds;
  if (config.passiveRefreshDailyBudget === 0 || minAgeSeconds * 1000 >= OVERLAP_MS) return;
  // A classic 7200-s token, confirmed current now, fetched long before (older than the min age).
  const fetchedAtMs = 0;
  const nowMs = 3_600_000;
  const promiseMs = guaranteedUntilMs(
    {
      kind: 'access_token',
      appid: 'wx0000000000000000',
      value: '-',
      origin: 'classic',
      fetchedAtMs,
      expiresAtMs: 7_190_000,
      refreshAtMs: 6_290_000,
      generation: 1,
      writer: '-',
    },
    nowMs,
    config,
  );
  const promiseSeconds = Math.max(0, Math.floor((promiseMs - nowMs) / 1000));
  log.emit({
    event: 'config.warning',
    variable: 'PASSIVE_REFRESH_MIN_AGE_SECONDS',
    value: minAgeSeconds,
    promiseSeconds,
    detail:
      `below WeChat's 300-s overlap: a reported classic token may be replaced ${minAgeSeconds} s after its fetch, so ` +
      `a classic token older than that is promised (expires_in) only ${promiseSeconds} s; consumers must ask again that often`,
  });
}

/** The cache as /healthz reports it. */
export interface CacheTopologyReport {
  /** `memory`: the in-process store of local runs; `memcached`: MEMCACHED_SERVERS. */
  kind: 'memory' | 'memcached';
  /** Nodes in use (0 until Auto Discovery has answered). */
  nodes: number;
  protocol: 'binary' | 'text' | null;
  tls: boolean;
  auto_discovery: boolean;
}

/**
 * The store MEMCACHED_SERVERS and the MEMCACHED_* topology variables describe: one node through its
 * adapter (memjs for the binary protocol, the text-protocol adapter otherwise; TLS or not), several
 * nodes or a configuration endpoint through the ketama cluster router with one adapter per node.
 */
function buildStore(
  config: Config,
  clock: Clock,
  log: EventLog,
): { store: KeyValueStore; topology: () => CacheTopologyReport } {
  const servers = config.memcachedServers;
  if (!servers) {
    return {
      store: new MemoryStore(clock),
      topology: () => ({ kind: 'memory', nodes: 1, protocol: null, tls: false, auto_discovery: false }),
    };
  }
  const { protocol, tls: useTls, autoDiscovery, discoveryIntervalSeconds } = config.memcachedTopology;
  // Production trusts Node's CA list (which holds Amazon's roots) plus NODE_EXTRA_CA_CERTS.
  const tls: TlsSettings | false = useTls ? {} : false;
  const timeoutMs = config.memcachedTimeoutMs;
  const onDiagnostic = (detail: string) => log.emit({ event: 'cache.diagnostic', detail });
  const nodeStore = (node: NodeAddress): KeyValueStore =>
    protocol === 'text'
      ? new TextMemcachedStore({ node, tls, timeoutMs })
      : new MemcachedStore({
          // Plain TCP: memjs's own socket (cheaper on the hit path), dialling the IP when discovery
          // gave one. TLS: the socket factory, which dials the IP and verifies the host name.
          servers: [useTls ? `${node.host}:${node.port}` : `${node.ip ?? node.host}:${node.port}`],
          timeoutMs,
          now: () => clock.now(),
          onDiagnostic,
          ...(useTls ? { socket: { factory: nodeSocketFactory(node, tls), tls: true } } : {}),
        });
  const addresses = servers.map((s): NodeAddress => ({ ...parseHostPort(s), ip: null }));
  const report = (nodes: number): CacheTopologyReport => ({
    kind: 'memcached',
    nodes,
    protocol,
    tls: useTls,
    auto_discovery: autoDiscovery,
  });
  if (addresses.length === 1 && !autoDiscovery) {
    const store = nodeStore(addresses[0] as NodeAddress);
    // Connect while the cold start does other work: a TLS handshake is the costly part of a first call.
    if (store instanceof TextMemcachedStore) store.warm();
    return { store, topology: () => report(1) };
  }
  const cluster = new ClusterStore({
    source: autoDiscovery
      ? {
          kind: 'discovery',
          endpoint: new ConfigEndpoint({ endpoint: addresses[0] as NodeAddress, tls, timeoutMs }),
        }
      : { kind: 'static', nodes: addresses },
    connect: nodeStore,
    intervalMs: discoveryIntervalSeconds * 1000,
    lockLeaseSeconds: config.lockLeaseSeconds,
    journalPrefix: `${config.cacheKeyPrefix}:topology`,
    now: () => clock.now(),
    onDiagnostic,
  });
  return { store: cluster, topology: () => report(cluster.describe()?.nodes ?? 0) };
}

/** A store passed in by a test or harness: described by the configuration it came with. */
function describeOverride(config: Config): CacheTopologyReport {
  const { protocol, tls, autoDiscovery } = config.memcachedTopology;
  return config.memcachedServers
    ? {
        kind: 'memcached',
        nodes: config.memcachedServers.length,
        protocol,
        tls,
        auto_discovery: autoDiscovery,
      }
    : { kind: 'memory', nodes: 1, protocol: null, tls: false, auto_discovery: false };
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
      secretPrefix: source.secretPrefix,
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
