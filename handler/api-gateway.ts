/**
 * API Gateway edge: HTTP API (payload 2.0) and REST API (payload 1.0) events in, proxy results out.
 * Checks run in a fixed order: route → 401 (key) → 400 (input) → 403 (scope) → 404 (appid).
 *
 * Error bodies: a caller that has not authenticated (no key, an unknown key, `/healthz`) gets a
 * generic message with the request id for a 5xx — such messages name the secret, appids and
 * configuration values, which are for the operator (the invocation's log line has them under the
 * same request id). 4xx messages and every answer to an authenticated caller keep the full message.
 */
import type { CallContext } from '../lib/domain.ts';
import { type ErrorBody, ServiceError, toServiceError } from '../lib/errors.ts';
import { findClient, unknownAppid } from '../lib/secrets/credentials.ts';
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
  /** The route's path, e.g. `/token` (see {@link routePath}). */
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
  const method =
    version === 2
      ? String((rc.http as Record<string, unknown> | undefined)?.method ?? '')
      : String(event.httpMethod);
  const path = routePath(event, version);
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

/**
 * The path of the route API Gateway matched, taken from its route information rather than the raw
 * path: a custom domain's base path mapping (`/tokens/token`) and a named stage (`/prod/token`)
 * prefix the raw path, never the route.
 *
 * - REST API (v1): `resource` (`/token`); a greedy `/{proxy+}` resource is filled in from
 *   `pathParameters.proxy`.
 * - HTTP API (v2): the path part of `routeKey` (`GET /token`), `{proxy+}` filled in the same way.
 *
 * The raw path (`rawPath`, v1 `path`) is the fallback only for events that carry no route: an HTTP
 * API's catch-all `$default` route, or a hand-built event without `resource`/`routeKey`. There a
 * named stage prefix is removed, but a base path mapping cannot be told apart from the route (v2
 * `rawPath` leaves the mapping out, v1 `path` keeps it in): deploy explicit routes, as serverless.yml
 * does.
 */
export function routePath(event: Record<string, unknown>, version: 1 | 2): string {
  const proxy = (event.pathParameters as Record<string, unknown> | null | undefined)?.proxy;
  const fill = (template: string) =>
    template.replace('{proxy+}', typeof proxy === 'string' ? proxy.replace(/^\/+/, '') : '');
  if (version === 1) {
    if (typeof event.resource === 'string' && event.resource.startsWith('/')) return fill(event.resource);
    return String(event.path ?? '/');
  }
  const routeKey = event.routeKey;
  const space = typeof routeKey === 'string' ? routeKey.indexOf(' ') : -1;
  if (typeof routeKey === 'string' && space > 0 && routeKey[space + 1] === '/') {
    return fill(routeKey.slice(space + 1));
  }
  const rc = (event.requestContext ?? {}) as Record<string, unknown>;
  let path = String(event.rawPath ?? (rc.http as Record<string, unknown> | undefined)?.path ?? '/');
  const stage = rc.stage;
  // A named stage (not $default) prefixes the raw path.
  if (typeof stage === 'string' && stage !== '$default' && path.startsWith(`/${stage}/`))
    path = path.slice(stage.length + 1);
  return path;
}

/** One API Gateway event in, its proxy result out: every failure is a status and `{error}`. */
export async function handleApiGateway(
  event: Record<string, unknown>,
  version: 1 | 2,
  container: Container,
  ctx: CallContext,
  startedAtMs: number,
  requestId: string | undefined,
): Promise<ProxyResult> {
  const channel = version === 1 ? 'http_v1' : 'http_v2';
  const caller = { authenticated: false };
  let outcome: { result: ProxyResult; log: InvocationOutcome };
  try {
    outcome = await answer(toHttpRequest(event, version), container, ctx, caller);
  } catch (err) {
    const error = toServiceError(err);
    const body = caller.authenticated ? error.toBody() : unauthenticatedBody(error, requestId);
    outcome = { result: json(error.status, body), log: { status: error.status, error } };
  }
  logInvocation(container.log, channel, startedAtMs, outcome.log);
  return outcome.result;
}

/**
 * The body for a caller that has not authenticated: 4xx as they are (they describe the caller's own
 * request), 5xx with a generic message naming the request id under which the log has the details.
 */
export function unauthenticatedBody(error: ServiceError, requestId: string | undefined): ErrorBody {
  if (error.status < 500) return error.toBody();
  return {
    error: {
      code: error.code,
      message:
        'the service could not answer this request; its operator can find the cause in the service log ' +
        `under request id ${requestId ?? 'unknown'}`,
      retryable: error.retryable,
    },
  };
}

async function answer(
  request: HttpRequest,
  container: Container,
  ctx: CallContext,
  caller: { authenticated: boolean },
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
  caller.authenticated = true;

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
  if (!credentials.apps.has(parsed.appid)) throw unknownAppid(parsed.appid);
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
