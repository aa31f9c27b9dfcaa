import type { Credentials } from '../domain.ts';
import { ServiceError } from '../errors.ts';
import type { Clock, SecretSource } from '../ports.ts';
import { parseCredentials } from './credentials.ts';

/** The one SDK call used, typed structurally: `(secretId) → SecretString`. */
export type ReadSecret = (secretId: string) => Promise<string | undefined>;

/**
 * The real AWS SDK v3 client, loaded on first use: the SDK costs tens of milliseconds to load, and
 * an invocation served from the cache never needs it. Region, endpoint
 * (`AWS_ENDPOINT_URL_SECRETS_MANAGER`) and credentials come from the SDK's own environment handling.
 */
export function sdkReadSecret(): ReadSecret {
  let client: Promise<{
    send: (command: unknown) => Promise<{ SecretString?: string }>;
    command: (id: string) => unknown;
  }>;
  return async (secretId) => {
    client ??= import('@aws-sdk/client-secrets-manager').then((sdk) => {
      const sm = new sdk.SecretsManagerClient({ maxAttempts: 2 });
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

export interface SecretsManagerCredentialsOptions {
  secretId: string;
  /** How long a parsed secret is reused. */
  cacheSeconds: number;
  clock: Pick<Clock, 'now'>;
  readSecret: ReadSecret;
}

/**
 * Credentials from one Secrets Manager secret, parsed and kept in memory for a bounded time.
 * Concurrent readers share one request; a failed read is never cached, so no failure sticks once
 * Secrets Manager answers again.
 */
export class SecretsManagerCredentials implements SecretSource {
  readonly #options: SecretsManagerCredentialsOptions;
  #cached: { credentials: Credentials; readAtMs: number } | undefined;
  #inFlight: Promise<Credentials> | undefined;

  constructor(options: SecretsManagerCredentialsOptions) {
    this.#options = options;
  }

  async get(options: { reload?: boolean } = {}): Promise<Credentials> {
    const now = this.#options.clock.now();
    const cached = this.#cached;
    if (cached) {
      const ageMs = now - cached.readAtMs;
      const fresh = ageMs < this.#options.cacheSeconds * 1000;
      // A reload (secret rotation) is asked for after WeChat rejected the secret; concurrent reloads
      // share one read, and the service remembers credential failures, so reloads cannot storm.
      if (fresh && !options.reload) return cached.credentials;
    }
    this.#inFlight ??= this.#read().finally(() => {
      this.#inFlight = undefined;
    });
    return this.#inFlight;
  }

  async #read(): Promise<Credentials> {
    const { secretId, readSecret, clock } = this.#options;
    const startedAtMs = clock.now();
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
    this.#cached = { credentials, readAtMs: startedAtMs };
    return credentials;
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
