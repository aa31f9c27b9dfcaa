/**
 * Per-app secrets: an apps entry without `secret` has its AppSecret in the secret named
 * WECHAT_SECRET_PREFIX + appid, read on the app's first use and kept under the list's rules.
 */
import { describe, expect, it } from 'vitest';
import type { ServiceError } from '../../../lib/errors.ts';
import { parseAppSecret, parseCredentials, requireCredentials } from '../../../lib/secrets/credentials.ts';
import { type ReadSecret, SecretsManagerCredentials } from '../../../lib/secrets/secrets-manager.ts';
import { RecordingTelemetry } from '../../fakes/service-fakes.ts';
import { failure } from '../../support/failure.ts';
import {
  TEST_APPID,
  TEST_APPID_2,
  TEST_SECRET,
  TEST_SECRET_2,
  TEST_SECRET_ROTATED,
  WECOM_APP_A1,
  WECOM_CORP_A,
  WECOM_SECRET_A1,
} from '../../support/secrets.ts';

const LIST_ID = 'wechat-token-service/list';
const PREFIX = 'wechat/apps/';
const SECOND = 1000;

/** The list: TEST_APPID with its secret elsewhere, TEST_APPID_2 with its secret inline. */
const LIST = JSON.stringify({
  apps: [
    { appid: TEST_APPID, tickets: ['jsapi'] },
    { appid: TEST_APPID_2, secret: TEST_SECRET_2 },
  ],
});

/** Secrets Manager as a map of secret name → text, counting reads per name. */
function secretsManager(secrets: Record<string, string>) {
  const reads = new Map<string, number>();
  let failing = false;
  const read: ReadSecret = async (id) => {
    reads.set(id, (reads.get(id) ?? 0) + 1);
    if (failing)
      throw Object.assign(new Error('InternalServiceError from the SDK'), { name: 'InternalServiceError' });
    const text = secrets[id];
    if (text === undefined) {
      throw Object.assign(new Error('not found'), { name: 'ResourceNotFoundException' });
    }
    return text;
  };
  return {
    read,
    secrets,
    reads,
    fail: (on: boolean) => {
      failing = on;
    },
  };
}

function source(
  sm: ReturnType<typeof secretsManager>,
  clock: { now: () => number },
  telemetry?: RecordingTelemetry,
) {
  return new SecretsManagerCredentials({
    secretId: LIST_ID,
    secretPrefix: PREFIX,
    cacheSeconds: 300,
    rereadSeconds: 30,
    graceSeconds: 3600,
    clock,
    readSecret: sm.read,
    ...(telemetry ? { telemetry } : {}),
  });
}

/** Which secret a resolved app holds, by name, so a failing assertion prints none. */
const which = (secret: string) =>
  secret === TEST_SECRET
    ? 'TEST_SECRET'
    : secret === TEST_SECRET_ROTATED
      ? 'TEST_SECRET_ROTATED'
      : secret === TEST_SECRET_2
        ? 'TEST_SECRET_2'
        : 'other';

describe('parseCredentials with per-app secrets', () => {
  it('accepts an entry without secret when WECHAT_SECRET_PREFIX is set, and keeps no secret for it', () => {
    const credentials = parseCredentials(LIST, { secretPrefix: PREFIX });
    expect(credentials.apps.get(TEST_APPID)).toEqual({
      appid: TEST_APPID,
      tokenApi: 'classic',
      tickets: ['jsapi'],
    });
    expect(which(credentials.apps.get(TEST_APPID_2)?.secret ?? '')).toBe('TEST_SECRET_2');
  });

  it('rejects an entry without secret when no prefix is set, saying both ways to fix it', () => {
    let err: ServiceError | undefined;
    try {
      parseCredentials(LIST);
    } catch (e) {
      err = e as ServiceError;
    }
    expect(err?.code).toBe('config_invalid');
    expect(err?.message).toContain(`apps[0] (appid ${TEST_APPID}) has no secret`);
    expect(err?.message).toContain('WECHAT_SECRET_PREFIX');
  });

  it('still rejects a secret that is there but not an AppSecret', () => {
    const text = JSON.stringify({ apps: [{ appid: TEST_APPID, secret: 'short' }] });
    expect(() => parseCredentials(text, { secretPrefix: PREFIX })).toThrow(/must be the AppSecret/);
  });
});

describe('parseAppSecret', () => {
  it('reads {"secret":"…"}', () => {
    expect(which(parseAppSecret(JSON.stringify({ secret: TEST_SECRET }), `${PREFIX}${TEST_APPID}`))).toBe(
      'TEST_SECRET',
    );
  });

  it.each([
    ['not JSON', `{"secret":"${TEST_SECRET}"`],
    ['a bare string', JSON.stringify(TEST_SECRET)],
    ['a short secret', JSON.stringify({ secret: 'short' })],
    ['another field', JSON.stringify({ appsecret: TEST_SECRET })],
  ])('rejects %s as config_invalid naming the secret, quoting none of it', (_what, text) => {
    let err: ServiceError | undefined;
    try {
      parseAppSecret(text, `${PREFIX}${TEST_APPID}`);
    } catch (e) {
      err = e as ServiceError;
    }
    expect(err?.code).toBe('config_invalid');
    expect(err?.message).toContain(`${PREFIX}${TEST_APPID}`);
    expect(err?.message.includes(TEST_SECRET)).toBe(false);
  });
});

describe('SecretsManagerCredentials with WECHAT_SECRET_PREFIX', () => {
  const clock = { t: Date.UTC(2025, 0, 15, 4, 0, 0), now: () => clock.t };

  it('reads an app’s own secret on its first use only, once however many calls and concurrent readers', async () => {
    const sm = secretsManager({
      [LIST_ID]: LIST,
      [`${PREFIX}${TEST_APPID}`]: JSON.stringify({ secret: TEST_SECRET }),
    });
    const credentials = source(sm, clock);
    await credentials.get();
    expect(sm.reads.get(`${PREFIX}${TEST_APPID}`)).toBeUndefined();
    const apps = await Promise.all(
      Array.from({ length: 20 }, () => requireCredentials(credentials, TEST_APPID)),
    );
    expect(new Set(apps.map((a) => which(a.secret)))).toEqual(new Set(['TEST_SECRET']));
    for (let i = 0; i < 10; i++) await requireCredentials(credentials, TEST_APPID);
    expect(sm.reads.get(`${PREFIX}${TEST_APPID}`)).toBe(1);
    expect(sm.reads.get(LIST_ID)).toBe(1);
    // An inline secret needs no read of its own.
    expect(which((await requireCredentials(credentials, TEST_APPID_2)).secret)).toBe('TEST_SECRET_2');
    expect(sm.reads.get(`${PREFIX}${TEST_APPID_2}`)).toBeUndefined();
  });

  it('names a WeCom app’s own secret prefix + corpid-agentid (Secrets Manager names have no ":")', async () => {
    const name = `${PREFIX}${WECOM_CORP_A}-1000002`;
    const list = JSON.stringify({ apps: [{ kind: 'wecom', corpid: WECOM_CORP_A, agentid: '1000002' }] });
    const sm = secretsManager({ [LIST_ID]: list, [name]: JSON.stringify({ secret: WECOM_SECRET_A1 }) });
    const app = await requireCredentials(source(sm, clock), WECOM_APP_A1);
    expect(app.secret === WECOM_SECRET_A1).toBe(true);
    expect([...sm.reads.keys()]).toEqual([LIST_ID, name]);
  });

  it('reads it again after SECRET_CACHE_SECONDS, and on reload (rotation) at most once per SECRET_REREAD_SECONDS', async () => {
    const name = `${PREFIX}${TEST_APPID}`;
    const sm = secretsManager({ [LIST_ID]: LIST, [name]: JSON.stringify({ secret: TEST_SECRET }) });
    const credentials = source(sm, clock);
    await requireCredentials(credentials, TEST_APPID);
    sm.secrets[name] = JSON.stringify({ secret: TEST_SECRET_ROTATED });
    clock.t += 299 * SECOND;
    expect(which((await requireCredentials(credentials, TEST_APPID)).secret)).toBe('TEST_SECRET');
    const reloaded = await requireCredentials(credentials, TEST_APPID, { reload: true });
    expect(which(reloaded.secret)).toBe('TEST_SECRET_ROTATED');
    await requireCredentials(credentials, TEST_APPID, { reload: true });
    expect(sm.reads.get(name)).toBe(2);
    clock.t += 300 * SECOND;
    await requireCredentials(credentials, TEST_APPID);
    expect(sm.reads.get(name)).toBe(3);
  });

  it('serves the last good copy while its secret cannot be read, within the grace period, and warns naming the app', async () => {
    const name = `${PREFIX}${TEST_APPID}`;
    const sm = secretsManager({ [LIST_ID]: LIST, [name]: JSON.stringify({ secret: TEST_SECRET }) });
    const telemetry = new RecordingTelemetry();
    const credentials = source(sm, clock, telemetry);
    await requireCredentials(credentials, TEST_APPID);
    clock.t += 301 * SECOND;
    sm.fail(true);
    expect(which((await requireCredentials(credentials, TEST_APPID)).secret)).toBe('TEST_SECRET');
    expect(telemetry.events.filter((e) => e.event === 'secrets.stale_served')).toContainEqual(
      expect.objectContaining({ appid: TEST_APPID, code: 'secrets_unavailable' }),
    );
    clock.t += 3600 * SECOND;
    expect((await failure(requireCredentials(credentials, TEST_APPID))).code).toBe('secrets_unavailable');
  });

  it('reports a missing app secret as config_invalid naming the secret and how to create it', async () => {
    const sm = secretsManager({ [LIST_ID]: LIST });
    const err = await failure(requireCredentials(source(sm, clock), TEST_APPID));
    expect(err.code).toBe('config_invalid');
    expect(err.message).toContain(`${PREFIX}${TEST_APPID}`);
    expect(err.message).toContain('{"secret":"<AppSecret>"}');
  });

  it('answers unknown_appid for an appid the list does not have, without reading a secret for it', async () => {
    const sm = secretsManager({ [LIST_ID]: LIST });
    const err = await failure(requireCredentials(source(sm, clock), 'wx1111111111111111'));
    expect(err.code).toBe('unknown_appid');
    expect(sm.reads.get(`${PREFIX}wx1111111111111111`)).toBeUndefined();
  });
});
