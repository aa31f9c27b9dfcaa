import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Credentials } from '../../../lib/domain.ts';
import {
  FAILED_READ_MEMORY_COLD_MS,
  FAILED_READ_MEMORY_MS,
  type ReadSecret,
  SecretsManagerCredentials,
  type SecretsManagerCredentialsOptions,
  sdkReadSecret,
} from '../../../lib/secrets/secrets-manager.ts';
import {
  type LocalSecretsManager,
  startLocalSecretsManager,
} from '../../../local/stand-ins/secrets-manager-endpoint.ts';
import { RecordingTelemetry } from '../../fakes/service-fakes.ts';
import { failure } from '../../support/failure.ts';
import { TEST_APPID, TEST_SECRET, TEST_SECRET_ROTATED } from '../../support/secrets.ts';

const SECRET_ID = 'wechat-token-service/test';
const CACHE_SECONDS = 300;
const REREAD_SECONDS = 30;
const GRACE_SECONDS = 3600;
const SECOND = 1000;

const secretText = (secret: string) => JSON.stringify({ appid: TEST_APPID, secret });

/** Which AppSecret the credentials hold, by name, so a failing assertion never prints a secret. */
function version(credentials: Credentials): string {
  const secret = credentials.apps.get(TEST_APPID)?.secret;
  return secret === TEST_SECRET ? 'initial' : secret === TEST_SECRET_ROTATED ? 'rotated' : 'other';
}

function options(
  clock: { now: () => number },
  readSecret: ReadSecret,
  extra: Partial<SecretsManagerCredentialsOptions> = {},
): SecretsManagerCredentialsOptions {
  return {
    secretId: SECRET_ID,
    cacheSeconds: CACHE_SECONDS,
    rereadSeconds: REREAD_SECONDS,
    graceSeconds: GRACE_SECONDS,
    clock,
    readSecret,
    ...extra,
  };
}

describe('SecretsManagerCredentials with the real AWS SDK', () => {
  let sm: LocalSecretsManager;
  let readSecret: ReadSecret;
  const saved: Record<string, string | undefined> = {};
  const clock = { t: Date.UTC(2025, 0, 15, 4, 0, 0), now: () => clock.t };

  beforeAll(async () => {
    sm = await startLocalSecretsManager();
    // The SDK reads its endpoint, region and credentials from the environment, as in Lambda.
    for (const [name, value] of Object.entries(sm.env())) {
      saved[name] = process.env[name];
      process.env[name] = value;
    }
    readSecret = sdkReadSecret();
  });

  afterAll(async () => {
    for (const [name, value] of Object.entries(saved)) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
    await sm?.close();
  });

  beforeEach(() => {
    sm.putSecret(SECRET_ID, secretText(TEST_SECRET));
    sm.failNext(0);
    sm.resetCounters();
  });

  const provider = (secretId = SECRET_ID, telemetry?: RecordingTelemetry) =>
    new SecretsManagerCredentials(
      options(clock, readSecret, { secretId, ...(telemetry ? { telemetry } : {}) }),
    );

  it('reads the secret once and serves the parsed copy while it is fresh', async () => {
    const credentials = provider();
    expect(credentials.held()).toBeUndefined();
    const first = await credentials.get();
    expect(version(first)).toBe('initial');
    expect(credentials.held()).toBe(first);
    sm.putSecret(SECRET_ID, secretText(TEST_SECRET_ROTATED));
    clock.t += CACHE_SECONDS * SECOND - 1;
    expect(await credentials.get()).toBe(first);
    expect(sm.calls.getSecretValue).toBe(1);
  });

  it('reads the secret again once the cached copy is cacheSeconds old', async () => {
    const credentials = provider();
    await credentials.get();
    sm.putSecret(SECRET_ID, secretText(TEST_SECRET_ROTATED));
    clock.t += CACHE_SECONDS * SECOND;
    const reread = await credentials.get();
    expect(version(reread)).toBe('rotated');
    expect(sm.calls.getSecretValue).toBe(2);
  });

  it('shares one GetSecretValue call among concurrent readers', async () => {
    const credentials = provider();
    const results = await Promise.all(Array.from({ length: 10 }, () => credentials.get()));
    expect(new Set(results).size).toBe(1);
    expect(sm.calls.getSecretValue).toBe(1);
  });

  it('re-reads on reload (WeChat rejected the secret: it may have been rotated), even while fresh', async () => {
    const credentials = provider();
    await credentials.get();
    sm.putSecret(SECRET_ID, secretText(TEST_SECRET_ROTATED));
    clock.t += 1000;
    expect(version(await credentials.get())).toBe('initial');
    expect(version(await credentials.get({ reload: true }))).toBe('rotated');
    expect(sm.calls.getSecretValue).toBe(2);
    // The reloaded copy is the cached one from now on.
    expect(version(await credentials.get())).toBe('rotated');
    expect(sm.calls.getSecretValue).toBe(2);
  });

  it('shares one read among concurrent reloads', async () => {
    const credentials = provider();
    await credentials.get();
    sm.putSecret(SECRET_ID, secretText(TEST_SECRET_ROTATED));
    const reloaded = await Promise.all(Array.from({ length: 10 }, () => credentials.get({ reload: true })));
    expect(reloaded.map(version)).toEqual(reloaded.map(() => 'rotated'));
    expect(sm.calls.getSecretValue).toBe(2);
  });

  it('re-reads at most once per rereadSeconds while WeChat keeps rejecting the secret (50 rejections → 2 reads)', async () => {
    const credentials = provider();
    await credentials.get();
    // 50 rejected requests, one every 500 ms: 25 s, inside one re-read interval.
    for (let i = 0; i < 50; i++) {
      await credentials.get({ reload: true });
      clock.t += 500;
    }
    expect(sm.calls.getSecretValue).toBe(2);
    // Once the interval is over, the next rejection reads again.
    clock.t += REREAD_SECONDS * SECOND;
    sm.putSecret(SECRET_ID, secretText(TEST_SECRET_ROTATED));
    expect(version(await credentials.get({ reload: true }))).toBe('rotated');
    expect(sm.calls.getSecretValue).toBe(3);
  });

  it('makes one GetSecretValue call per read (no SDK retries on top of its own policy)', async () => {
    const credentials = provider();
    sm.failNext(10, 'throttle');
    const err = await failure(credentials.get());
    expect(err.code).toBe('secrets_unavailable');
    expect(err.retryable).toBe(true);
    expect(err.message).toContain('Throttling');
    expect(sm.calls.getSecretValue).toBe(1);
  });

  it('remembers a failed read on a cold instance for a second, then reads again', async () => {
    const credentials = provider();
    sm.failNext(10, 'throttle');
    expect((await failure(credentials.get())).code).toBe('secrets_unavailable');
    sm.failNext(0);
    clock.t += FAILED_READ_MEMORY_COLD_MS - 1;
    // Still remembered: the same answer without a call.
    expect((await failure(credentials.get())).code).toBe('secrets_unavailable');
    expect(sm.calls.getSecretValue).toBe(1);
    clock.t += 1;
    expect(version(await credentials.get())).toBe('initial');
    expect(sm.calls.getSecretValue).toBe(2);
  });

  it('Secrets Manager down for 60 s after the copy aged out: serves the last good secret, one call per 5 s, and warns', async () => {
    const telemetry = new RecordingTelemetry();
    const credentials = provider(SECRET_ID, telemetry);
    const first = await credentials.get();
    clock.t += CACHE_SECONDS * SECOND; // aged out
    sm.resetCounters();
    sm.failNext(1_000_000, 'internal');
    const outageStartedAt = clock.t;
    let served = 0;
    while (clock.t < outageStartedAt + 60 * SECOND) {
      // A request every 100 ms: 600 of them.
      expect(await credentials.get()).toBe(first);
      served++;
      clock.t += 100;
    }
    expect(served).toBe(600);
    console.log(
      `Secrets Manager down 60 s: ${served} requests, ${sm.calls.getSecretValue} GetSecretValue calls`,
    );
    expect(sm.calls.getSecretValue).toBe(60 / (FAILED_READ_MEMORY_MS / SECOND));
    // One warning per failed read, each saying how old the copy is and how long it may still serve.
    const warnings = telemetry.of('secrets.stale_served');
    expect(warnings).toHaveLength(sm.calls.getSecretValue);
    expect(warnings[0]).toMatchObject({ code: 'secrets_unavailable', ageSeconds: CACHE_SECONDS });
    expect(warnings[0]?.graceLeftSeconds).toBe(GRACE_SECONDS);

    // Secrets Manager answers again: the next read after the remembered failure succeeds.
    sm.failNext(0);
    sm.putSecret(SECRET_ID, secretText(TEST_SECRET_ROTATED));
    clock.t += FAILED_READ_MEMORY_MS;
    expect(version(await credentials.get())).toBe('rotated');
  });

  it('fails with the read error once the grace period is over', async () => {
    const credentials = provider();
    await credentials.get();
    sm.failNext(1_000_000, 'internal');
    clock.t += (CACHE_SECONDS + GRACE_SECONDS) * SECOND - 1;
    expect(version(await credentials.get())).toBe('initial');
    clock.t += FAILED_READ_MEMORY_MS;
    const err = await failure(credentials.get());
    expect(err.code).toBe('secrets_unavailable');
    // Nothing usable is left: the failure is remembered for the short (cold) time only.
    const calls = sm.calls.getSecretValue;
    clock.t += FAILED_READ_MEMORY_COLD_MS;
    await failure(credentials.get());
    expect(sm.calls.getSecretValue).toBe(calls + 1);
  });

  it('keeps serving the last good secret when the secret is replaced by one that is not valid credentials', async () => {
    const telemetry = new RecordingTelemetry();
    const credentials = provider(SECRET_ID, telemetry);
    await credentials.get();
    sm.putSecret(SECRET_ID, '{"apps":"not a list"}');
    clock.t += CACHE_SECONDS * SECOND;
    expect(version(await credentials.get())).toBe('initial');
    expect(telemetry.of('secrets.stale_served')[0]?.code).toBe('config_invalid');
  });

  it('does not spend a re-read on a reload while a failed read is remembered', async () => {
    const credentials = provider();
    await credentials.get();
    clock.t += CACHE_SECONDS * SECOND;
    sm.failNext(1, 'internal');
    await credentials.get(); // fails, serves the last good copy
    sm.putSecret(SECRET_ID, secretText(TEST_SECRET_ROTATED));
    expect(version(await credentials.get({ reload: true }))).toBe('initial');
    expect(sm.calls.getSecretValue).toBe(2);
    clock.t += FAILED_READ_MEMORY_MS;
    expect(version(await credentials.get({ reload: true }))).toBe('rotated');
    expect(sm.calls.getSecretValue).toBe(3);
  });

  it('reports an unknown secret as config_invalid naming the secret id', async () => {
    const missing = 'wechat-token-service/missing';
    const err = await failure(provider(missing).get());
    expect(err.code).toBe('config_invalid');
    expect(err.message).toContain(missing);
    expect(err.message).toContain('WECHAT_SECRET_ID');
  });

  it('reports a secret that is not valid credentials as config_invalid, quoting none of it', async () => {
    sm.putSecret(SECRET_ID, JSON.stringify({ appid: 'wx-not-an-appid', secret: TEST_SECRET }));
    const err = await failure(provider().get());
    expect(err.code).toBe('config_invalid');
    expect(err.message.includes(TEST_SECRET)).toBe(false);
  });
});

describe('SecretsManagerCredentials with an injected reader', () => {
  const clock = { t: Date.UTC(2025, 0, 15, 4, 0, 0), now: () => clock.t };

  /** A reader whose answers the test releases one by one. */
  function deferredReader() {
    const pending: { resolve: (text: string | undefined) => void; reject: (err: unknown) => void }[] = [];
    const read: ReadSecret = () => new Promise((resolve, reject) => pending.push({ resolve, reject }));
    return { read, pending };
  }

  const namedError = (name: string) => Object.assign(new Error(`${name} from the SDK`), { name });

  it('fails every concurrent reader of a failed read, then reads afresh once the failure is forgotten', async () => {
    const reader = deferredReader();
    const credentials = new SecretsManagerCredentials(options(clock, reader.read));
    const a = credentials.get();
    const b = credentials.get();
    expect(reader.pending).toHaveLength(1);
    reader.pending[0]?.reject(namedError('InternalServiceError'));
    expect((await failure(a)).code).toBe('secrets_unavailable');
    expect((await failure(b)).code).toBe('secrets_unavailable');

    clock.t += FAILED_READ_MEMORY_COLD_MS;
    const c = credentials.get();
    expect(reader.pending).toHaveLength(2);
    reader.pending[1]?.resolve(secretText(TEST_SECRET));
    expect(version(await c)).toBe('initial');
  });

  it('says which permission is missing when access is denied', async () => {
    const credentials = new SecretsManagerCredentials(
      options(clock, async () => {
        throw namedError('AccessDeniedException');
      }),
    );
    const err = await failure(credentials.get());
    expect(err.code).toBe('secrets_unavailable');
    expect(err.message).toContain('secretsmanager:GetSecretValue');
    expect(err.message).toContain(SECRET_ID);
  });

  it('rejects a binary-only secret (no SecretString) as config_invalid', async () => {
    const credentials = new SecretsManagerCredentials(options(clock, async () => undefined));
    const err = await failure(credentials.get());
    expect(err.code).toBe('config_invalid');
    expect(err.message).toContain('SecretString');
  });

  it('reads on every call when cacheSeconds is 0', async () => {
    let reads = 0;
    const credentials = new SecretsManagerCredentials(
      options(
        clock,
        async () => {
          reads++;
          return secretText(TEST_SECRET);
        },
        { cacheSeconds: 0 },
      ),
    );
    await credentials.get();
    await credentials.get();
    expect(reads).toBe(2);
  });

  it('re-reads on every rejection when rereadSeconds is 0', async () => {
    let reads = 0;
    const credentials = new SecretsManagerCredentials(
      options(
        clock,
        async () => {
          reads++;
          return secretText(TEST_SECRET);
        },
        { rereadSeconds: 0 },
      ),
    );
    await credentials.get();
    await credentials.get({ reload: true });
    await credentials.get({ reload: true });
    expect(reads).toBe(3);
  });

  it('reports a reader failure that is not an Error as secrets_unavailable, without its text', async () => {
    const credentials = new SecretsManagerCredentials(
      options(clock, () => Promise.reject('a string, not an Error')),
    );
    const err = await failure(credentials.get());
    expect(err.code).toBe('secrets_unavailable');
    expect(err.message).not.toContain('a string');
  });
});
