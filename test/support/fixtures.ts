/**
 * The real parts an integration test needs: the WeChat simulator, a local Secrets Manager endpoint
 * that the real AWS SDK client talks to, and the run's memcached (a fresh key prefix per test so
 * tests never see each other's records).
 */
import { createHash, randomBytes } from 'node:crypto';
import { afterAll, afterEach, beforeAll, inject } from 'vitest';
import {
  type LocalSecretsManager,
  startLocalSecretsManager,
} from '../../local/stand-ins/secrets-manager-endpoint.ts';
import {
  type SimulatorOptions,
  startWeChatSimulator,
  type WeChatSimulator,
} from '../../local/stand-ins/wechat-simulator.ts';
import { startWeComSimulator, type WeComSimulator } from '../../local/stand-ins/wecom-simulator.ts';
import { instancePool } from './instances.ts';
import {
  CLIENT_KEY,
  CLIENT_KEY_OTHER,
  CLIENT_KEY_WECOM,
  TEST_APPID,
  TEST_APPID_2,
  TEST_APPID_STABLE,
  TEST_APPID_UNCONFIGURED,
  TEST_SECRET,
  TEST_SECRET_2,
  TEST_SECRET_STABLE,
  WECOM_APP_A1,
  WECOM_CORP_A,
  WECOM_SECRET_A1,
  WECOM_SECRET_A2,
  WECOM_SECRET_B1,
  WECOM_SIMULATOR_APPS,
} from './secrets.ts';

export const SECRET_ID = 'wechat-token-service/test';
/** A second secret: a WeChat app and WeCom apps side by side (`WECHAT_SECRET_ID: WECOM_SECRET_ID`). */
export const WECOM_SECRET_ID = 'wechat-token-service/test-wecom';
/** Configured with corp B's Secret under corp A's id: WeCom answers 40091. */
export const WECOM_APP_WRONG_CORP = `${WECOM_CORP_A}:1000009`;

/**
 * For tests of the classic endpoint itself (its faults, retries, rotations): a classic app's first
 * fetch is classic. Under the default policy a missing record is fetched from the stable endpoint
 * first (the record-loss rule of lib/token/lifetime.ts, tested on its own).
 */
export const CLASSIC_FIRST = { MISSING_RECORD_POLICY: 'classic' } as const;

export const sha256hex = (text: string) => createHash('sha256').update(text, 'utf8').digest('hex');

/** The many-apps secret form: three apps (one stable, one with tickets) and two clients. */
export function credentialsSecret(overrides: { secret?: string } = {}): string {
  return JSON.stringify({
    apps: [
      {
        appid: TEST_APPID,
        secret: overrides.secret ?? TEST_SECRET,
        token_api: 'classic',
        tickets: ['jsapi', 'wx_card'],
      },
      { appid: TEST_APPID_2, secret: TEST_SECRET_2 },
      { appid: TEST_APPID_STABLE, secret: TEST_SECRET_STABLE, token_api: 'stable' },
    ],
    clients: [
      // TEST_APPID_UNCONFIGURED is listed but has no apps entry: it must answer 404, not break the secret.
      { id: 'billing', key_sha256: sha256hex(CLIENT_KEY), appids: [TEST_APPID, TEST_APPID_UNCONFIGURED] },
      { id: 'other', key_sha256: sha256hex(CLIENT_KEY_OTHER), appids: [TEST_APPID_2] },
    ],
  });
}

/**
 * The WeCom secret: the first WeChat app unchanged beside two agents of corp A (A1 with both tickets,
 * the second spelled `agent_jsapi`), and an entry WeCom rejects with 40091; one client scoped to them.
 */
export function weComCredentialsSecret(): string {
  return JSON.stringify({
    apps: [
      { appid: TEST_APPID, secret: TEST_SECRET, tickets: ['jsapi'] },
      {
        kind: 'wecom',
        corpid: WECOM_CORP_A,
        agentid: '1000002',
        secret: WECOM_SECRET_A1,
        tickets: ['jsapi', 'agent_config'],
      },
      {
        kind: 'wecom',
        corpid: WECOM_CORP_A,
        agentid: 1000003,
        secret: WECOM_SECRET_A2,
        tickets: ['agent_jsapi'],
      },
      { kind: 'wecom', corpid: WECOM_CORP_A, agentid: '1000009', secret: WECOM_SECRET_B1 },
    ],
    clients: [
      {
        id: 'wecom-portal',
        key_sha256: sha256hex(CLIENT_KEY_WECOM),
        appids: [WECOM_APP_A1, WECOM_APP_WRONG_CORP, TEST_APPID],
      },
    ],
  });
}

export interface World {
  sim: WeChatSimulator;
  /** The WeCom simulator (WECOM_API_BASE_URL): corp A's two agents and corp B's one. */
  wecom: WeComSimulator;
  secrets: LocalSecretsManager;
  memcachedAddress: string;
  /** Environment of a handler or instance wired to all of the above. */
  env(extra?: Record<string, string>): Record<string, string>;
  close(): Promise<void>;
}

export async function startWorld(simOptions: Partial<SimulatorOptions> = {}): Promise<World> {
  const sim = await startWeChatSimulator({
    apps: [
      { appid: TEST_APPID, secret: TEST_SECRET },
      { appid: TEST_APPID_2, secret: TEST_SECRET_2 },
      { appid: TEST_APPID_STABLE, secret: TEST_SECRET_STABLE },
    ],
    ...simOptions,
  });
  const wecom = await startWeComSimulator({
    apps: WECOM_SIMULATOR_APPS,
  });
  const secrets = await startLocalSecretsManager({
    secrets: { [SECRET_ID]: credentialsSecret(), [WECOM_SECRET_ID]: weComCredentialsSecret() },
  });
  const memcachedAddress = inject('memcachedAddress');
  // The AWS SDK reads its endpoint, region and credentials from process.env (as in Lambda).
  const savedEnv = { ...process.env };
  Object.assign(process.env, secrets.env());
  const prefix = `t${randomBytes(4).toString('hex')}`;
  return {
    sim,
    wecom,
    secrets,
    memcachedAddress,
    env: (extra = {}) => ({
      ...secrets.env(),
      WECHAT_SECRET_ID: SECRET_ID,
      WECHAT_API_BASE_URL: sim.baseUrl,
      WECOM_API_BASE_URL: wecom.baseUrl,
      MEMCACHED_SERVERS: memcachedAddress,
      CACHE_KEY_PREFIX: prefix,
      ...extra,
    }),
    async close() {
      await sim.close();
      await wecom.close();
      await secrets.close();
      for (const key of Object.keys(secrets.env())) {
        if (savedEnv[key] === undefined) delete process.env[key];
        else process.env[key] = savedEnv[key];
      }
    },
  };
}

/** An API Gateway HTTP API (payload 2.0) event. */
export function httpV2(
  method: string,
  path: string,
  options: { query?: Record<string, string>; headers?: Record<string, string>; body?: string } = {},
) {
  const rawQueryString = new URLSearchParams(options.query ?? {}).toString();
  return {
    version: '2.0',
    routeKey: `${method} ${path}`,
    rawPath: path,
    rawQueryString,
    headers: Object.fromEntries(Object.entries(options.headers ?? {}).map(([k, v]) => [k.toLowerCase(), v])),
    ...(options.query ? { queryStringParameters: options.query } : {}),
    ...(options.body !== undefined ? { body: options.body } : {}),
    isBase64Encoded: false,
    requestContext: { http: { method, path, sourceIp: '127.0.0.1' }, stage: '$default', requestId: 'r' },
  };
}

/** An API Gateway REST API (payload 1.0) event; header names keep the client's case. */
export function httpV1(
  method: string,
  path: string,
  options: { query?: Record<string, string>; headers?: Record<string, string>; body?: string } = {},
) {
  return {
    resource: path,
    path,
    httpMethod: method,
    headers: options.headers ?? {},
    multiValueHeaders: Object.fromEntries(Object.entries(options.headers ?? {}).map(([k, v]) => [k, [v]])),
    queryStringParameters: options.query ?? null,
    body: options.body ?? null,
    isBase64Encoded: false,
    requestContext: { httpMethod: method, path: `/prod${path}`, stage: 'prod', requestId: 'r' },
  };
}

export const bearer = (key: string) => ({ Authorization: `Bearer ${key}` });

/** A cache key prefix of its own for one test, so tests never see each other's records. */
export const uniquePrefix = (prefix: string) => `${prefix}${randomBytes(3).toString('hex')}`;

/**
 * A test file's world and instance pool, with their lifecycle: the world starts before the file's
 * tests and closes after them; every instance a test spawns is closed after that test.
 */
export function worldPerFile(simOptions: Partial<SimulatorOptions> = {}) {
  const pool = instancePool();
  let current: World | undefined;
  beforeAll(async () => {
    current = await startWorld(simOptions);
  });
  afterEach(() => pool.closeAll());
  afterAll(async () => {
    await current?.close();
  });
  return {
    pool,
    /** The started world (inside tests and hooks). */
    get world(): World {
      if (!current) throw new Error('the world starts in beforeAll: use it inside tests');
      return current;
    },
  };
}
