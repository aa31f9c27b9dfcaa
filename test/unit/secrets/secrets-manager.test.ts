import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Credentials } from '../../../lib/domain.ts';
import {
  type ReadSecret,
  SecretsManagerCredentials,
  sdkReadSecret,
} from '../../../lib/secrets/secrets-manager.ts';
import {
  type LocalSecretsManager,
  startLocalSecretsManager,
} from '../../../local/stand-ins/secrets-manager-endpoint.ts';
import { failure } from '../../support/failure.ts';
import { TEST_APPID, TEST_SECRET, TEST_SECRET_ROTATED } from '../../support/secrets.ts';

const SECRET_ID = 'wechat-token-service/test';
const CACHE_SECONDS = 300;

const secretText = (secret: string) => JSON.stringify({ appid: TEST_APPID, secret });

/** Which AppSecret the credentials hold, by name, so a failing assertion never prints a secret. */
function version(credentials: Credentials): string {
  const secret = credentials.apps.get(TEST_APPID)?.secret;
  return secret === TEST_SECRET ? 'initial' : secret === TEST_SECRET_ROTATED ? 'rotated' : 'other';
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

  const provider = (secretId = SECRET_ID) =>
    new SecretsManagerCredentials({ secretId, cacheSeconds: CACHE_SECONDS, clock, readSecret });

  it('reads the secret once and serves the parsed copy while it is fresh', async () => {
    const credentials = provider();
    const first = await credentials.get();
    expect(version(first)).toBe('initial');
    sm.putSecret(SECRET_ID, secretText(TEST_SECRET_ROTATED));
    clock.t += CACHE_SECONDS * 1000 - 1;
    expect(await credentials.get()).toBe(first);
    expect(sm.calls.getSecretValue).toBe(1);
  });

  it('reads the secret again once the cached copy is cacheSeconds old', async () => {
    const credentials = provider();
    await credentials.get();
    sm.putSecret(SECRET_ID, secretText(TEST_SECRET_ROTATED));
    clock.t += CACHE_SECONDS * 1000;
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

  it('reports throttling as secrets_unavailable, and the next call reads the secret', async () => {
    const credentials = provider();
    // Enough failures for every attempt the SDK makes on its own.
    sm.failNext(10, 'throttle');
    const err = await failure(credentials.get());
    expect(err.code).toBe('secrets_unavailable');
    expect(err.retryable).toBe(true);
    expect(err.message).toContain('Throttling');
    const attempts = sm.calls.getSecretValue;
    expect(attempts).toBeGreaterThan(0);

    sm.failNext(0);
    const credentialsAfter = await credentials.get();
    expect(version(credentialsAfter)).toBe('initial');
    expect(sm.calls.getSecretValue).toBe(attempts + 1);
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

  it('fails every concurrent reader of a failed read, then reads afresh', async () => {
    const reader = deferredReader();
    const credentials = new SecretsManagerCredentials({
      secretId: SECRET_ID,
      cacheSeconds: CACHE_SECONDS,
      clock,
      readSecret: reader.read,
    });
    const a = credentials.get();
    const b = credentials.get();
    expect(reader.pending).toHaveLength(1);
    reader.pending[0]?.reject(namedError('InternalServiceError'));
    expect((await failure(a)).code).toBe('secrets_unavailable');
    expect((await failure(b)).code).toBe('secrets_unavailable');

    const c = credentials.get();
    expect(reader.pending).toHaveLength(2);
    reader.pending[1]?.resolve(secretText(TEST_SECRET));
    expect(version(await c)).toBe('initial');
  });

  it('says which permission is missing when access is denied', async () => {
    const credentials = new SecretsManagerCredentials({
      secretId: SECRET_ID,
      cacheSeconds: CACHE_SECONDS,
      clock,
      readSecret: async () => {
        throw namedError('AccessDeniedException');
      },
    });
    const err = await failure(credentials.get());
    expect(err.code).toBe('secrets_unavailable');
    expect(err.message).toContain('secretsmanager:GetSecretValue');
    expect(err.message).toContain(SECRET_ID);
  });

  it('rejects a binary-only secret (no SecretString) as config_invalid', async () => {
    const credentials = new SecretsManagerCredentials({
      secretId: SECRET_ID,
      cacheSeconds: CACHE_SECONDS,
      clock,
      readSecret: async () => undefined,
    });
    const err = await failure(credentials.get());
    expect(err.code).toBe('config_invalid');
    expect(err.message).toContain('SecretString');
  });

  it('reads on every call when cacheSeconds is 0', async () => {
    let reads = 0;
    const credentials = new SecretsManagerCredentials({
      secretId: SECRET_ID,
      cacheSeconds: 0,
      clock,
      readSecret: async () => {
        reads++;
        return secretText(TEST_SECRET);
      },
    });
    await credentials.get();
    await credentials.get();
    expect(reads).toBe(2);
  });
});
