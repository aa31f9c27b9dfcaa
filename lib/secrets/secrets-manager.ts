import type { Credentials } from '../domain.ts';
import { ServiceError } from '../errors.ts';
import type { Clock, SecretSource, Telemetry } from '../ports.ts';
import { appSecretName, parseAppSecret, parseCredentials } from './credentials.ts';

/** The one SDK call used, typed structurally: `(secretId) → SecretString`. */
export type ReadSecret = (secretId: string) => Promise<string | undefined>;

/**
 * The real AWS SDK v3 client, loaded on first use: the SDK costs tens of milliseconds to load, and
 * an invocation served from the cache never needs it. Region, endpoint
 * (`AWS_ENDPOINT_URL_SECRETS_MANAGER`) and credentials come from the SDK's own environment handling.
 *
 * One attempt per read: {@link SecretsManagerCredentials} is the retry policy (a failed read is
 * remembered for a few seconds and the last good secret served meanwhile), so an outage costs one
 * GetSecretValue per instance per few seconds, not the SDK's retries on top.
 */
export function sdkReadSecret(): ReadSecret {
  let client: Promise<{
    send: (command: unknown) => Promise<{ SecretString?: string }>;
    command: (id: string) => unknown;
  }>;
  return async (secretId) => {
    client ??= import('@aws-sdk/client-secrets-manager').then((sdk) => {
      const sm = new sdk.SecretsManagerClient({ maxAttempts: 1 });
      return {
        send: (command) => sm.send(command as InstanceType<typeof sdk.GetSecretValueCommand>),
        command: (id) => new sdk.GetSecretValueCommand({ SecretId: id }),
      };
    });
    const { send, command } = await client;
    const out = await send(command(secretId));
    return out.SecretString;
  };
}

/**
 * A failed read is remembered this long when a last good secret can be served meanwhile: a Secrets
 * Manager outage then costs one call per instance per 5 s, and no request waits on it.
 */
export const FAILED_READ_MEMORY_MS = 5000;
/**
 * …and this long when nothing can be served without the secret (a cold instance): every request
 * fails until a read succeeds, so a short blip should cost little, and a longer outage still costs
 * one call per instance per second, not one per request.
 */
export const FAILED_READ_MEMORY_COLD_MS = 1000;

export interface SecretsManagerCredentialsOptions {
  secretId: string;
  /**
   * WECHAT_SECRET_PREFIX: an app entry without `secret` has it in the secret named this prefix +
   * appid, read on first use and kept under the same rules as the list.
   */
  secretPrefix?: string | undefined;
  /** How long a parsed secret is reused before it is read again (SECRET_CACHE_SECONDS). */
  cacheSeconds: number;
  /**
   * After WeChat rejected the secret, at most one re-read per this many seconds
   * (SECRET_REREAD_SECONDS): a rejection repeated by every request must not become a read per request.
   */
  rereadSeconds: number;
  /**
   * When the secret cannot be read again, the last good copy is still used this long after it aged
   * out (SECRET_GRACE_SECONDS), with a warning event and a metric.
   */
  graceSeconds: number;
  clock: Pick<Clock, 'now'>;
  readSecret: ReadSecret;
  /** Where the warning about a secret served past its cache time goes. */
  telemetry?: Telemetry;
}

/**
 * The credentials: the list of apps and clients (WECHAT_SECRET_ID) and, when WECHAT_SECRET_PREFIX is
 * set, the AppSecrets of entries without one, each in its own secret (prefix + appid). Every secret
 * is kept by the rules of {@link CachedSecret}; an app's secret is read on its first use only.
 */
export class SecretsManagerCredentials implements SecretSource {
  readonly #options: SecretsManagerCredentialsOptions;
  readonly #list: CachedSecret<Credentials>;
  readonly #apps = new Map<string, CachedSecret<string>>();

  constructor(options: SecretsManagerCredentialsOptions) {
    this.#options = options;
    const { secretPrefix } = options;
    this.#list = new CachedSecret({
      ...options,
      parse: (text) => parseCredentials(text, { secretPrefix }),
      notFound: 'set WECHAT_SECRET_ID to the secret holding the apps',
    });
  }

  get(options: { reload?: boolean } = {}): Promise<Credentials> {
    return this.#list.get(options);
  }

  held(): Credentials | undefined {
    return this.#list.held();
  }

  /** The AppSecret in the secret named WECHAT_SECRET_PREFIX + appid. Throws `config_invalid`, `secrets_unavailable`. */
  appSecret(appid: string, options: { reload?: boolean } = {}): Promise<string> {
    const prefix = this.#options.secretPrefix;
    if (prefix === undefined) {
      return Promise.reject(
        new ServiceError(
          'config_invalid',
          `appid ${appid} has no secret, and WECHAT_SECRET_PREFIX is not set`,
        ),
      );
    }
    let cached = this.#apps.get(appid);
    if (!cached) {
      const secretId = appSecretName(prefix, appid);
      cached = new CachedSecret({
        ...this.#options,
        secretId,
        appid,
        parse: (text) => parseAppSecret(text, secretId),
        notFound: `create it with {"secret":"<AppSecret>"} (WECHAT_SECRET_PREFIX + the app id, a WeCom id with "-" for ":"), or put the secret in the apps entry`,
      });
      this.#apps.set(appid, cached);
    }
    return cached.get(options);
  }
}

interface CachedSecretOptions<T> extends SecretsManagerCredentialsOptions {
  parse(text: string): T;
  /** What to do when Secrets Manager has no such secret. */
  notFound: string;
  /** The app whose secret this is (per-app secrets), for the stale-served event. */
  appid?: string;
}

/**
 * One Secrets Manager secret, parsed and kept in memory for a bounded time.
 *
 * - Concurrent readers share one request.
 * - `reload` (WeChat rejected the secret: it may have been rotated) reads again at once, but at most
 *   once per `rereadSeconds`; later reloads inside that time join the read in flight or get the copy
 *   just read.
 * - A failed read (throttled, unreachable, denied, not found, not valid credentials) is remembered
 *   for {@link FAILED_READ_MEMORY_MS} ({@link FAILED_READ_MEMORY_COLD_MS} when nothing is held):
 *   requests meanwhile do not call Secrets Manager.
 * - While reads fail, the last good copy is served until `cacheSeconds + graceSeconds` after it was
 *   read (event `secrets.stale_served` once per failed read); after that, and on a cold instance,
 *   the read's error is the answer (`secrets_unavailable`, or `config_invalid` for a missing or
 *   malformed secret).
 */
class CachedSecret<T> {
  readonly #options: CachedSecretOptions<T>;
  #good: { credentials: T; readAtMs: number } | undefined;
  #failed: { error: ServiceError; untilMs: number } | undefined;
  #lastRereadAtMs: number | undefined;
  #inFlight: Promise<T> | undefined;

  constructor(options: CachedSecretOptions<T>) {
    this.#options = options;
  }

  async get(options: { reload?: boolean } = {}): Promise<T> {
    const { clock, cacheSeconds, rereadSeconds } = this.#options;
    const now = clock.now();
    const reread =
      options.reload === true &&
      (this.#lastRereadAtMs === undefined || now - this.#lastRereadAtMs >= rereadSeconds * 1000);
    const good = this.#good;
    // A reload joins a read in flight (concurrent rejections share one re-read).
    const joinRead = options.reload === true && this.#inFlight !== undefined;
    if (good && !reread && !joinRead && now - good.readAtMs < cacheSeconds * 1000) return good.credentials;

    const failed = this.#failed;
    if (!joinRead && failed && now < failed.untilMs) return this.#usableOr(failed.error, now);
    if (reread) this.#lastRereadAtMs = now;
    this.#inFlight ??= this.#read().finally(() => {
      this.#inFlight = undefined;
    });
    try {
      return await this.#inFlight;
    } catch (err) {
      return this.#usableOr(err as ServiceError, clock.now());
    }
  }

  /** The parsed secret held in memory, whatever its age, without reading; undefined before the first read. */
  held(): T | undefined {
    return this.#good?.credentials;
  }

  async #read(): Promise<T> {
    const { secretId, readSecret, clock, parse, notFound } = this.#options;
    const startedAtMs = clock.now();
    try {
      let text: string | undefined;
      try {
        text = await readSecret(secretId);
      } catch (err) {
        throw secretsError(err, secretId, notFound);
      }
      if (text === undefined) {
        throw new ServiceError(
          'config_invalid',
          `secret ${secretId} has no SecretString; store it as JSON text`,
        );
      }
      const credentials = parse(text);
      this.#good = { credentials, readAtMs: startedAtMs };
      this.#failed = undefined;
      return credentials;
    } catch (err) {
      const error =
        err instanceof ServiceError
          ? err
          : new ServiceError('internal_error', `unexpected error reading secret ${secretId}`, {
              cause: err,
            });
      const now = clock.now();
      const usable = this.#usable(now);
      this.#failed = {
        error,
        untilMs: now + (usable ? FAILED_READ_MEMORY_MS : FAILED_READ_MEMORY_COLD_MS),
      };
      if (usable && this.#good) {
        const { cacheSeconds, graceSeconds, telemetry, appid } = this.#options;
        const ageMs = now - this.#good.readAtMs;
        telemetry?.emit({
          event: 'secrets.stale_served',
          ...(appid === undefined ? {} : { appid }),
          code: error.code,
          ageSeconds: Math.floor(ageMs / 1000),
          graceLeftSeconds: Math.max(0, Math.floor(((cacheSeconds + graceSeconds) * 1000 - ageMs) / 1000)),
        });
      }
      throw error;
    }
  }

  /** The last good copy while inside its cache time plus the grace period. */
  #usable(now: number): T | undefined {
    const good = this.#good;
    const { cacheSeconds, graceSeconds } = this.#options;
    if (good && now - good.readAtMs < (cacheSeconds + graceSeconds) * 1000) return good.credentials;
    return undefined;
  }

  #usableOr(error: ServiceError, now: number): T {
    const usable = this.#usable(now);
    if (usable) return usable;
    throw error;
  }
}
function secretsError(err: unknown, secretId: string, notFound: string): ServiceError {
  const name = err instanceof Error ? err.name : 'Error';
  if (name === 'ResourceNotFoundException') {
    return new ServiceError('config_invalid', `Secrets Manager has no secret ${secretId}; ${notFound}`, {
      cause: err,
    });
  }
  if (name === 'AccessDeniedException') {
    return new ServiceError(
      'secrets_unavailable',
      `Secrets Manager denied reading ${secretId}; grant secretsmanager:GetSecretValue on it (and kms:Decrypt on its key)`,
      { cause: err },
    );
  }
  return new ServiceError(
    'secrets_unavailable',
    `Secrets Manager could not be read (${name.slice(0, 60)}); retry shortly`,
    {
      cause: err,
    },
  );
}
