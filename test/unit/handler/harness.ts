/**
 * One or more handler "instances" (createHandler with overrides) sharing one in-process store and
 * one scripted WeChat, as Lambda instances share Memcached: no memcached, no network, and a fake
 * clock. The credentials come from a scripted Secrets Manager read (the real
 * SecretsManagerCredentials around it), so reads can be counted, changed and failed.
 */
import { createHash } from 'node:crypto';
import { createHandler } from '../../../handler/index.ts';
import type { ReadSecret } from '../../../lib/secrets/secrets-manager.ts';
import { MemoryStore } from '../../../lib/store/memory.ts';
import { FakeTime, FakeWeChat } from '../../fakes/service-fakes.ts';
import { CLIENT_KEY, TEST_APPID, TEST_APPID_2, TEST_SECRET, TEST_SECRET_2 } from '../../support/secrets.ts';

export const SECRET_ARN = 'arn:aws:secretsmanager:ap-east-1:123456789012:secret:wts/credentials-AbCdEf';
export const START_MS = Date.UTC(2025, 0, 15, 4, 0, 0);

export type Env = Record<string, string | undefined>;
export type Line = Record<string, unknown>;
type Handler = ReturnType<typeof createHandler>;

const sha256hex = (text: string) => createHash('sha256').update(text, 'utf8').digest('hex');

/** The many-apps secret: by default both test apps, one client scoped to both. */
export function secretJson(appids: string[] = [TEST_APPID, TEST_APPID_2]): string {
  const secrets: Record<string, string> = { [TEST_APPID]: TEST_SECRET, [TEST_APPID_2]: TEST_SECRET_2 };
  return JSON.stringify({
    apps: appids.map((appid) => ({ appid, secret: secrets[appid], tickets: ['jsapi'] })),
    clients: [{ id: 'billing', key_sha256: sha256hex(CLIENT_KEY), appids: [TEST_APPID, TEST_APPID_2] }],
  });
}

export interface World {
  time: FakeTime;
  store: MemoryStore;
  wechat: FakeWeChat;
  /** Every log line any instance wrote, parsed. */
  lines: Line[];
  /** The secret's current text at "Secrets Manager". */
  secret: {
    text: string;
    reads: number;
    failing: false | 'InternalServiceError' | 'ResourceNotFoundException';
  };
  /** A new instance (a fresh container on first invocation). */
  instance(env?: Env): Instance;
  events(name: string): Line[];
}

export interface Instance {
  handler: Handler;
  invoke<T = Record<string, unknown>>(event: unknown, requestId?: string): Promise<T>;
}

export function world(baseEnv: Env = {}): World {
  const time = new FakeTime(START_MS);
  const store = new MemoryStore(time.clock);
  const wechat = new FakeWeChat();
  const lines: Line[] = [];
  const secret: World['secret'] = { text: secretJson(), reads: 0, failing: false };
  const readSecret: ReadSecret = async () => {
    secret.reads++;
    if (secret.failing) {
      throw Object.assign(new Error(`${secret.failing} from the SDK`), { name: secret.failing });
    }
    return secret.text;
  };
  let requests = 0;
  return {
    time,
    store,
    wechat,
    lines,
    secret,
    instance(env: Env = {}) {
      const handler = createHandler({
        env: { WECHAT_SECRET_ID: SECRET_ARN, ...baseEnv, ...env },
        clock: time.clock,
        store,
        wechat,
        readSecret,
        writeLog: (line) => lines.push(JSON.parse(line) as Line),
      });
      return {
        handler,
        invoke: async <T>(event: unknown, requestId = `req-${++requests}`) =>
          (await handler(event, {
            getRemainingTimeInMillis: () => 10_000,
            awsRequestId: requestId,
          })) as T,
      };
    },
    events: (name) => lines.filter((l) => l.event === name),
  };
}

export interface HttpOptions {
  query?: Record<string, string>;
  headers?: Record<string, string>;
  body?: string;
  base64?: boolean;
}

/** An HTTP API (payload 2.0) event as API Gateway sends it for an explicit route on `$default`. */
export function v2(
  method: string,
  path: string,
  options: HttpOptions & {
    routeKey?: string;
    rawPath?: string;
    stage?: string;
    pathParameters?: Record<string, string>;
  } = {},
) {
  const body =
    options.body === undefined
      ? undefined
      : options.base64
        ? Buffer.from(options.body).toString('base64')
        : options.body;
  return {
    version: '2.0',
    routeKey: options.routeKey ?? `${method === 'HEAD' ? 'GET' : method} ${path}`,
    rawPath: options.rawPath ?? path,
    rawQueryString: new URLSearchParams(options.query ?? {}).toString(),
    headers: Object.fromEntries(Object.entries(options.headers ?? {}).map(([k, v]) => [k.toLowerCase(), v])),
    ...(options.query ? { queryStringParameters: options.query } : {}),
    ...(options.pathParameters ? { pathParameters: options.pathParameters } : {}),
    ...(body !== undefined ? { body } : {}),
    isBase64Encoded: options.base64 === true,
    requestContext: {
      http: { method, path: options.rawPath ?? path, sourceIp: '198.51.100.7' },
      stage: options.stage ?? '$default',
      routeKey: options.routeKey ?? `${method} ${path}`,
      requestId: 'apigw-request-id',
    },
  };
}

/** A REST API (payload 1.0) event; header names keep the client's case, an absent query is null. */
export function v1(
  method: string,
  resource: string,
  options: HttpOptions & { path?: string; stage?: string; pathParameters?: Record<string, string> } = {},
) {
  const body =
    options.body === undefined
      ? null
      : options.base64
        ? Buffer.from(options.body).toString('base64')
        : options.body;
  const path = options.path ?? resource;
  return {
    resource,
    path,
    httpMethod: method,
    headers: options.headers ?? null,
    multiValueHeaders: options.headers
      ? Object.fromEntries(Object.entries(options.headers).map(([k, v]) => [k, [v]]))
      : null,
    queryStringParameters: options.query ?? null,
    multiValueQueryStringParameters: options.query
      ? Object.fromEntries(Object.entries(options.query).map(([k, v]) => [k, [v]]))
      : null,
    pathParameters: options.pathParameters ?? null,
    body,
    isBase64Encoded: options.base64 === true,
    requestContext: {
      resourcePath: resource,
      httpMethod: method,
      path: `/${options.stage ?? 'prod'}${path}`,
      stage: options.stage ?? 'prod',
      requestId: 'apigw-request-id',
    },
  };
}

export const bearer = (key: string = CLIENT_KEY) => ({ Authorization: `Bearer ${key}` });

export interface ProxyAnswer {
  statusCode: number;
  headers: Record<string, string>;
  body: string;
}

/** Any answer body: a token, ticket, health or error body. */
export interface Body {
  error?: { code: string; message: string; retryable: boolean; errcode?: number };
  access_token?: string;
  expires_in?: number;
  ticket?: string;
  status?: string;
  [field: string]: unknown;
}

export const parse = (result: ProxyAnswer): Body | undefined =>
  result.body === '' ? undefined : (JSON.parse(result.body) as Body);
