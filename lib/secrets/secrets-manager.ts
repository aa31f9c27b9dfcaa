import type { Credentials } from '../domain.ts';
import { ServiceError } from '../errors.ts';
import type { Clock, SecretSource, Telemetry } from '../ports.ts';
import { parseCredentials } from './credentials.ts';

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
 * Credentials from one Secrets Manager secret, parsed and kept in memory for a bounded time.
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
export class SecretsManagerCredentials implements SecretSource {
  readonly #options: SecretsManagerCredentialsOptions;
  #good: { credentials: Credentials; readAtMs: number } | undefined;
  #failed: { error: ServiceError; untilMs: number } | undefined;
  #lastRereadAtMs: number | undefined;
  #inFlight: Promise<Credentials> | undefined;

  constructor(options: SecretsManagerCredentialsOptions) {
    this.#options = options;
  }

  async get(options: { reload?: boolean } = {}): Promise<Credentials> {
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
  held(): Credentials | undefined {
    return this.#good?.credentials;
  }

  async #read(): Promise<Credentials> {
    const { secretId, readSecret, clock } = this.#options;
    const startedAtMs = clock.now();
    try {
      let text: string | undefined;
      try {
        text = await readSecret(secretId);
      } catch (err) {
        throw secretsError(err, secretId);
      }
      if (text === undefined) {
        throw new ServiceError(
          'config_invalid',
          `secret ${secretId} has no SecretString; store the credentials as JSON text`,
        );
      }
      const credentials = parseCredentials(text);
      this.#good = { credentials, readAtMs: startedAtMs };
      this.#failed = undefined;
      return credentials;
    } catch (err) {
      const error =
        err instanceof ServiceError
          ? err
          : new ServiceError('internal_error', 'unexpected error reading the credentials secret', {
              cause: err,
            });
      const now = clock.now();
      const usable = this.#usable(now);
      this.#failed = {
        error,
        untilMs: now + (usable ? FAILED_READ_MEMORY_MS : FAILED_READ_MEMORY_COLD_MS),
      };
      if (usable && this.#good) {
        const { cacheSeconds, graceSeconds, telemetry } = this.#options;
        const ageMs = now - this.#good.readAtMs;
        telemetry?.emit({
          event: 'secrets.stale_served',
          code: error.code,
          ageSeconds: Math.floor(ageMs / 1000),
          graceLeftSeconds: Math.max(0, Math.floor(((cacheSeconds + graceSeconds) * 1000 - ageMs) / 1000)),
        });
      }
      throw error;
    }
  }

  /** The last good copy while inside its cache time plus the grace period. */
  #usable(now: number): Credentials | undefined {
    const good = this.#good;
    const { cacheSeconds, graceSeconds } = this.#options;
    if (good && now - good.readAtMs < (cacheSeconds + graceSeconds) * 1000) return good.credentials;
    return undefined;
  }

  #usableOr(error: ServiceError, now: number): Credentials {
    const usable = this.#usable(now);
    if (usable) return usable;
    throw error;
  }
}
function secretsError(err: unknown, secretId: string): ServiceError {
  const name = err instanceof Error ? err.name : 'Error';
  if (name === 'ResourceNotFoundException') {
    return new ServiceError(
      'config_invalid',
      `Secrets Manager has no secret ${secretId}; set WECHAT_SECRET_ID to the secret holding the apps`,
      { cause: err },
    );
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
