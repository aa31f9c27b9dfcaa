/**
 * API Gateway edge: HTTP API (payload 2.0) and REST API (payload 1.0) events in, proxy results out.
 * Checks run in a fixed order: route → 401 (key) → 400 (input) → 403 (scope) → 404 (appid).
 */
import type { CallContext } from '../lib/domain.ts';
import { ServiceError, toServiceError } from '../lib/errors.ts';
import { findClient } from '../lib/secrets/credentials.ts';
import type { Container } from './container.ts';
import { type InvocationOutcome, logInvocation } from './invocation-log.ts';
import { type Operation, parseRequest, runOperation } from './operations.ts';

export interface ProxyResult {
  statusCode: number;
  headers: Record<string, string>;
  body: string;
}

/** The parts of either payload version the routes use. */
export interface HttpRequest {
  method: string;
  path: string;
  /** Lower-case names. */
  headers: Record<string, string>;
  query: Record<string, string>;
  body: string | undefined;
}

type Route = Operation | 'healthz';

const ROUTES: Record<string, Record<string, Route>> = {
  '/token': { GET: 'get_token' },
  '/token/refresh': { POST: 'refresh_token' },
  '/ticket': { GET: 'get_ticket' },
  '/jssdk/config': { POST: 'jssdk_config' },
  // Health checkers often use HEAD: the same answer without a body.
  '/healthz': { GET: 'healthz', HEAD: 'healthz' },
};

const MAX_BODY_LENGTH = 16 * 1024;

/** Normalises either payload version. */
export function toHttpRequest(event: Record<string, unknown>, version: 1 | 2): HttpRequest {
  const rc = (event.requestContext ?? {}) as Record<string, unknown>;
  let method: string;
  let path: string;
  if (version === 2) {
    const http = rc.http as Record<string, unknown>;
    method = String(http.method ?? '');
    path = String(event.rawPath ?? http.path ?? '/');
    const stage = rc.stage;
    // A named stage (not $default) prefixes the raw path.
    if (typeof stage === 'string' && stage !== '$default' && path.startsWith(`/${stage}/`))
      path = path.slice(stage.length + 1);
  } else {
    method = String(event.httpMethod);
    path = String(event.path ?? '/');
  }
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries((event.headers ?? {}) as Record<string, unknown>)) {
    if (typeof value === 'string') headers[name.toLowerCase()] = value;
  }
  const query: Record<string, string> = {};
  for (const [name, value] of Object.entries(
    (event.queryStringParameters ?? {}) as Record<string, unknown>,
  )) {
    if (typeof value === 'string') query[name] = value;
  }
  let body = typeof event.body === 'string' ? event.body : undefined;
  if (body !== undefined && event.isBase64Encoded === true)
    body = Buffer.from(body, 'base64').toString('utf8');
  return {
    method: method.toUpperCase(),
    path: path.length > 1 ? path.replace(/\/+$/, '') : path,
    headers,
    query,
    body,
  };
}

/** One API Gateway event in, its proxy result out: every failure is a status and `{error}`. */
export async function handleApiGateway(
  event: Record<string, unknown>,
  version: 1 | 2,
  container: Container,
  ctx: CallContext,
  startedAtMs: number,
): Promise<ProxyResult> {
  const channel = version === 1 ? 'http_v1' : 'http_v2';
  let outcome: { result: ProxyResult; log: InvocationOutcome };
  try {
    outcome = await answer(toHttpRequest(event, version), container, ctx);
  } catch (err) {
    const error = toServiceError(err);
    outcome = { result: json(error.status, error.toBody()), log: { status: error.status, error } };
  }
  logInvocation(container.log, channel, startedAtMs, outcome.log);
  return outcome.result;
}

async function answer(
  request: HttpRequest,
  container: Container,
  ctx: CallContext,
): Promise<{ result: ProxyResult; log: InvocationOutcome }> {
  const methods = ROUTES[request.path];
  if (!methods) {
    throw new ServiceError(
      'route_not_found',
      `no route ${request.path.slice(0, 100)}; routes: ${Object.keys(ROUTES).join(', ')}`,
    );
  }
  const route = methods[request.method];
  if (!route) {
    throw new ServiceError('method_not_allowed', `${request.path} takes ${Object.keys(methods).join(', ')}`);
  }
  if (route === 'healthz') {
    const cache = await container.service.cacheReachable();
    const status = cache ? 200 : 503;
    const result = json(status, {
      status: cache ? 'ok' : 'degraded',
      cache: cache ? 'ok' : 'unreachable',
      topology: container.cacheTopology(),
    });
    if (request.method === 'HEAD') result.body = '';
    return { result, log: { operation: route, status } };
  }

  // 401: the key, checked against the clients of the credentials secret.
  const auth = request.headers.authorization;
  const match = auth === undefined ? null : /^Bearer +([\x21-\x7e]{1,512})$/i.exec(auth.trim());
  if (!match) {
    throw new ServiceError('unauthorized', 'send the client key as "Authorization: Bearer <key>"');
  }
  const credentials = await container.secrets.get();
  const client = findClient(credentials, match[1] as string);
  if (!client)
    throw new ServiceError(
      'unauthorized',
      'the client key is not known; check the key, or add its SHA-256 to clients',
    );

  // 400: the input.
  const fields = request.method === 'GET' ? request.query : parseJsonBody(request.body);
  const parsed = parseRequest(route, fields);

  // 403, then 404.
  if (!client.appids.has(parsed.appid)) {
    throw new ServiceError(
      'forbidden',
      `client ${client.id} may not use appid ${parsed.appid}; add it to the client's appids`,
    );
  }
  if (!credentials.apps.has(parsed.appid)) {
    throw new ServiceError(
      'unknown_appid',
      `appid ${parsed.appid} is not configured: add it to the apps list of the credentials secret`,
    );
  }
  const operation = await runOperation(container.service, parsed, ctx, container.clock);
  return {
    result: json(200, operation.body),
    log: { operation: route, appid: parsed.appid, status: 200, served: operation.served },
  };
}

function parseJsonBody(body: string | undefined): Record<string, unknown> {
  if (body === undefined || body.trim() === '')
    throw new ServiceError('invalid_request', 'the request body must be a JSON object');
  if (body.length > MAX_BODY_LENGTH)
    throw new ServiceError('invalid_request', `the request body must be at most ${MAX_BODY_LENGTH} bytes`);
  let value: unknown;
  try {
    value = JSON.parse(body);
  } catch {
    throw new ServiceError('invalid_request', 'the request body is not valid JSON');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ServiceError('invalid_request', 'the request body must be a JSON object');
  }
  return value as Record<string, unknown>;
}

export function json(statusCode: number, body: unknown): ProxyResult {
  return {
    statusCode,
    headers: { 'content-type': 'application/json', 'cache-control': 'no-store' },
    body: JSON.stringify(body),
  };
}
