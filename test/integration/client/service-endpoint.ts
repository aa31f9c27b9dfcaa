/**
 * The service as consumers reach it, on one loopback port, in front of instances running the
 * deployable bundle (dist/index.js in child processes):
 *
 * - `POST /2015-03-31/functions/<name>/invocations` — the Lambda Invoke API, for the real
 *   `@aws-sdk/client-lambda` (`AWS_ENDPOINT_URL_LAMBDA`): the body is the event, the answer the result;
 * - anything else — API Gateway HTTP API: the request becomes a payload 2.0 event, and the proxy
 *   result the HTTP answer (as `npm start` does).
 *
 * Requests go to the instances in turn. Every call is counted by channel and action, and
 * {@link ServiceEndpoint.failFor} makes the endpoint answer a retryable error body for a while, as
 * the service does when WeChat is down.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { readBody } from '../../../local/read-body.ts';
import { httpV2 } from '../../support/fixtures.ts';
import type { Instance } from '../../support/instances.ts';

export const FUNCTION_NAME = 'wechat-token-service-test-token';

/** The body every channel answers during {@link ServiceEndpoint.failFor}. */
export const UNAVAILABLE_BODY = {
  error: {
    code: 'wechat_unavailable',
    message: 'WeChat /cgi-bin/token answered errcode -1 (system error) (injected by the test endpoint)',
    retryable: true,
    errcode: -1,
  },
};

export interface EndpointCall {
  channel: 'invoke' | 'http';
  action: string;
  atMs: number;
  /** Answered by the failure injection, not by the service. */
  failed: boolean;
}

export interface ServiceEndpoint {
  baseUrl: string;
  /** Environment that points the AWS SDK's Lambda client here. */
  lambdaEnv(): Record<string, string>;
  calls: EndpointCall[];
  count(action?: string): number;
  /** Answers {@link UNAVAILABLE_BODY} (HTTP 503, or the invoke result) for the next `ms`. */
  failFor(ms: number): void;
  close(): Promise<void>;
}

const HTTP_ACTIONS: Record<string, string> = {
  'GET /token': 'get_token',
  'POST /token/refresh': 'refresh_token',
  'GET /ticket': 'get_ticket',
  'POST /jssdk/config': 'jssdk_config',
};

export async function startServiceEndpoint(instances: Instance[]): Promise<ServiceEndpoint> {
  let next = 0;
  let failUntilMs = 0;
  const calls: EndpointCall[] = [];
  const instance = () => {
    const chosen = instances[next++ % instances.length];
    if (!chosen) throw new Error('no instance');
    return chosen;
  };

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const body = (await readBody(req)).toString('utf8');
    const url = new URL(req.url ?? '/', 'http://localhost');
    const failing = Date.now() < failUntilMs;
    const invoke = /^\/2015-03-31\/functions\/[^/]+\/invocations$/.exec(url.pathname);
    if (req.method === 'POST' && invoke) {
      const event = body === '' ? {} : (JSON.parse(body) as Record<string, unknown>);
      calls.push({
        channel: 'invoke',
        action: typeof event.action === 'string' ? event.action : 'get_token',
        atMs: Date.now(),
        failed: failing,
      });
      const result = failing ? UNAVAILABLE_BODY : await instance().invoke(event);
      send(res, 200, { 'content-type': 'application/json', 'x-amz-executed-version': '$LATEST' }, result);
      return;
    }
    const method = req.method ?? 'GET';
    calls.push({
      channel: 'http',
      action: HTTP_ACTIONS[`${method} ${url.pathname}`] ?? `${method} ${url.pathname}`,
      atMs: Date.now(),
      failed: failing,
    });
    if (failing) {
      send(res, 503, { 'content-type': 'application/json' }, UNAVAILABLE_BODY);
      return;
    }
    const headers: Record<string, string> = {};
    for (const [name, value] of Object.entries(req.headers)) {
      if (typeof value === 'string') headers[name] = value;
    }
    const query = Object.fromEntries(url.searchParams);
    const event = httpV2(method, url.pathname, {
      headers,
      ...(url.search ? { query } : {}),
      ...(body !== '' ? { body } : {}),
    });
    const result = await instance().invoke<{
      statusCode: number;
      headers?: Record<string, string>;
      body?: string;
    }>(event);
    res.writeHead(result.statusCode, result.headers ?? {});
    res.end(result.body ?? '');
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) send(res, 500, { 'content-type': 'application/json' }, { message: String(err) });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    baseUrl,
    lambdaEnv: () => ({
      AWS_ENDPOINT_URL_LAMBDA: baseUrl,
      AWS_REGION: 'ap-east-1',
      AWS_ACCESS_KEY_ID: 'AKIDLOCALTEST',
      AWS_SECRET_ACCESS_KEY: 'local-test-secret-access-key',
    }),
    calls,
    count: (action) => calls.filter((c) => action === undefined || c.action === action).length,
    failFor(ms) {
      failUntilMs = Date.now() + ms;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function send(res: ServerResponse, status: number, headers: Record<string, string>, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { ...headers, 'content-length': Buffer.byteLength(text) });
  res.end(text);
}
