import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type LocalSecretsManager,
  startLocalSecretsManager,
} from '../../../local/stand-ins/secrets-manager-endpoint.ts';

const SECRET_NAME = 'wechat/test-app';
const INITIAL_VALUE = JSON.stringify({ appId: 'wx-test', appSecret: 's3cr3t' });

describe('local Secrets Manager endpoint with the real SDK client', () => {
  let sm: LocalSecretsManager;
  let client: SecretsManagerClient;
  const savedEnv: Record<string, string | undefined> = {};

  beforeAll(async () => {
    sm = await startLocalSecretsManager({ secrets: { [SECRET_NAME]: INITIAL_VALUE } });
    // Configure the SDK the way production does: through the environment only.
    for (const [key, value] of Object.entries(sm.env())) {
      savedEnv[key] = process.env[key];
      process.env[key] = value;
    }
    client = new SecretsManagerClient({ maxAttempts: 1 });
  });

  afterAll(async () => {
    client?.destroy();
    for (const [key, value] of Object.entries(savedEnv)) {
      if (value === undefined) delete process.env[key];
      else process.env[key] = value;
    }
    await sm?.close();
  });

  it('env() names the endpoint, region and dummy credentials', () => {
    expect(sm.endpoint).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(sm.region).toBe('us-east-1');
    expect(sm.env()).toEqual({
      AWS_ENDPOINT_URL_SECRETS_MANAGER: sm.endpoint,
      AWS_REGION: 'us-east-1',
      AWS_ACCESS_KEY_ID: expect.any(String),
      AWS_SECRET_ACCESS_KEY: expect.any(String),
    });
  });

  it('GetSecretValue returns the SecretString, by name and by the ARN it reports', async () => {
    const byName = await client.send(new GetSecretValueCommand({ SecretId: SECRET_NAME }));
    expect(byName.SecretString).toBe(INITIAL_VALUE);
    expect(byName.Name).toBe(SECRET_NAME);
    expect(byName.VersionStages).toEqual(['AWSCURRENT']);
    expect(byName.CreatedDate).toBeInstanceOf(Date);
    expect(Math.abs((byName.CreatedDate?.getTime() ?? 0) - Date.now())).toBeLessThan(60_000);
    expect(byName.ARN).toMatch(/^arn:aws:secretsmanager:us-east-1:\d{12}:secret:wechat\/test-app-\w{6}$/);

    const byArn = await client.send(new GetSecretValueCommand({ SecretId: byName.ARN }));
    expect(byArn.SecretString).toBe(INITIAL_VALUE);
    expect(byArn.VersionId).toBe(byName.VersionId);
  });

  it('unknown ids throw ResourceNotFoundException', async () => {
    const error = await client.send(new GetSecretValueCommand({ SecretId: 'no/such/secret' })).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(Error);
    expect((error as Error).name).toBe('ResourceNotFoundException');
    expect((error as Error).message).toBe("Secrets Manager can't find the specified secret.");
    expect((error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode).toBe(400);
  });

  it('putSecret rotates (new value, new VersionId, same ARN) and deleteSecret removes', async () => {
    const before = await client.send(new GetSecretValueCommand({ SecretId: SECRET_NAME }));
    sm.putSecret(SECRET_NAME, 'rotated');
    const after = await client.send(new GetSecretValueCommand({ SecretId: SECRET_NAME }));
    expect(after.SecretString).toBe('rotated');
    expect(after.VersionId).not.toBe(before.VersionId);
    expect(after.ARN).toBe(before.ARN);

    sm.putSecret('other', 'x');
    sm.deleteSecret('other');
    await expect(client.send(new GetSecretValueCommand({ SecretId: 'other' }))).rejects.toMatchObject({
      name: 'ResourceNotFoundException',
    });
  });

  it('failNext makes the SDK throw (maxAttempts: 1), then it recovers', async () => {
    sm.putSecret(SECRET_NAME, INITIAL_VALUE);
    const get = () => client.send(new GetSecretValueCommand({ SecretId: SECRET_NAME }));

    sm.failNext(1, 'throttle');
    await expect(get()).rejects.toMatchObject({
      name: 'ThrottlingException',
      $metadata: { httpStatusCode: 400 },
    });
    expect((await get()).SecretString).toBe(INITIAL_VALUE);

    sm.failNext(1, 'internal');
    await expect(get()).rejects.toMatchObject({
      name: 'InternalServiceError',
      $metadata: { httpStatusCode: 500 },
    });
    expect((await get()).SecretString).toBe(INITIAL_VALUE);

    sm.failNext(1, 'reset');
    // The SDK's node handler names a dropped connection 'TimeoutError' (code ECONNRESET).
    await expect(get()).rejects.toMatchObject({ code: 'ECONNRESET', message: 'socket hang up' });
    expect((await get()).SecretString).toBe(INITIAL_VALUE);
  });

  it('failAll fails every request until failNext(0) ends the outage', async () => {
    sm.putSecret(SECRET_NAME, INITIAL_VALUE);
    const get = () => client.send(new GetSecretValueCommand({ SecretId: SECRET_NAME }));
    sm.failAll('internal');
    for (let i = 0; i < 5; i++) await expect(get()).rejects.toMatchObject({ name: 'InternalServiceError' });
    sm.failNext(0);
    expect((await get()).SecretString).toBe(INITIAL_VALUE);
  });

  it('the default SDK retry policy retries injected failures', async () => {
    const retrying = new SecretsManagerClient({ maxAttempts: 3 });
    try {
      // 5xx backs off from 100 ms (throttling from 500 ms), so 'internal' keeps this test fast.
      sm.resetCounters();
      sm.failNext(2, 'internal');
      const result = await retrying.send(new GetSecretValueCommand({ SecretId: SECRET_NAME }));
      expect(result.SecretString).toBe(INITIAL_VALUE);
      expect(result.$metadata.attempts).toBe(3);
      expect(sm.calls.getSecretValue).toBe(3);

      // A destroyed socket (ECONNRESET / socket hang up) is retried as a transient error too.
      sm.resetCounters();
      sm.failNext(1, 'reset');
      const afterReset = await retrying.send(new GetSecretValueCommand({ SecretId: SECRET_NAME }));
      expect(afterReset.SecretString).toBe(INITIAL_VALUE);
      expect(afterReset.$metadata.attempts).toBe(2);
      expect(sm.calls.getSecretValue).toBe(2);
    } finally {
      retrying.destroy();
    }
  });

  it('counts GetSecretValue calls and resets the counter', async () => {
    sm.resetCounters();
    expect(sm.calls.getSecretValue).toBe(0);
    await client.send(new GetSecretValueCommand({ SecretId: SECRET_NAME }));
    await client.send(new GetSecretValueCommand({ SecretId: SECRET_NAME }));
    await client.send(new GetSecretValueCommand({ SecretId: 'missing' })).catch(() => undefined);
    expect(sm.calls.getSecretValue).toBe(3);
    sm.resetCounters();
    expect(sm.calls.getSecretValue).toBe(0);
  });

  it('answers other operations with InvalidRequestException', async () => {
    const response = await fetch(sm.endpoint, {
      method: 'POST',
      headers: { 'x-amz-target': 'secretsmanager.ListSecrets', 'content-type': 'application/x-amz-json-1.1' },
      body: '{}',
    });
    expect(response.status).toBe(400);
    expect(response.headers.get('content-type')).toBe('application/x-amz-json-1.1');
    expect(((await response.json()) as { __type: string }).__type).toBe('InvalidRequestException');
  });

  it('honours an explicit region and endpoint passed as client config', async () => {
    const other = await startLocalSecretsManager({ region: 'eu-west-1', secrets: { a: 'b' } });
    const explicit = new SecretsManagerClient({
      endpoint: other.endpoint,
      region: other.region,
      credentials: { accessKeyId: 'x', secretAccessKey: 'y' },
      maxAttempts: 1,
    });
    try {
      const result = await explicit.send(new GetSecretValueCommand({ SecretId: 'a' }));
      expect(result.SecretString).toBe('b');
      expect(result.ARN).toMatch(/^arn:aws:secretsmanager:eu-west-1:/);
      expect(other.calls.getSecretValue).toBe(1);
      expect(sm.calls.getSecretValue).toBe(0);
    } finally {
      explicit.destroy();
      await other.close();
    }
  });
});
