/**
 * `npm start`: the Lambda handler behind a local HTTP server.
 *
 * Each request becomes an API Gateway HTTP API (payload 2.0) event for the same handler that runs in
 * Lambda, and the proxy result goes back as the HTTP response. With no credentials in the
 * environment it runs the embedded defaults: the bundled WeChat simulator with a demo app, the WeCom
 * simulator with a demo WeCom app, a demo client key and the in-process cache. With real configuration (`WECHAT_SECRET_ID`, or
 * `WECHAT_APPID` + `WECHAT_APPSECRET`, and optionally `MEMCACHED_SERVERS`) the environment is passed
 * through untouched: it is the real thing. Secrets are never printed.
 *
 * `PORT` (default 3000; `0` picks a free port) sets the port; the server listens on 127.0.0.1 only.
 * It stops on SIGINT or SIGTERM — sent to `npm start` too, which execs node so that npm's forwarded
 * signal reaches it — and when its parent process is gone.
 */

import { randomBytes, randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createHandler } from '../handler/index.ts';
import { loadConfig } from '../lib/config.ts';
import type { SecretSource } from '../lib/ports.ts';
import { parseCredentials, sha256 } from '../lib/secrets/credentials.ts';
import { readBody } from './read-body.ts';
import { startWeChatSimulator, type WeChatSimulator } from './stand-ins/wechat-simulator.ts';
import { startWeComSimulator, type WeComSimulator } from './stand-ins/wecom-simulator.ts';

const HOST = '127.0.0.1';
const DEMO_APPID = 'wx0123456789abcdef';
const DEMO_CORPID = 'ww0123456789abcdef';
const DEMO_WECOM_APP = `${DEMO_CORPID}:1000002`;
/** The Lambda timeout the local context pretends to have. */
const TIMEOUT_MS = 10_000;
const MAX_BODY_BYTES = 1024 * 1024;

type Env = Record<string, string | undefined>;
type Handler = ReturnType<typeof createHandler>;

interface Setup {
  env: Env | undefined;
  simulator: WeChatSimulator | undefined;
  /** The embedded run's WeCom simulator, and the credentials holding both demo apps. */
  wecom?: { simulator: WeComSimulator; secrets: SecretSource };
  /** Lines describing what runs (no secret in them). */
  describe: string[];
  /** What to put after `Bearer ` in the example curl lines. */
  keyForCurl: string;
  appid: string;
}

function fail(message: string): never {
  process.stderr.write(`npm start: ${message}\n`);
  process.exit(1);
}

function readPort(raw: string | undefined): number {
  if (raw === undefined || raw.trim() === '') return 3000;
  const value = raw.trim();
  if (!/^\d{1,5}$/.test(value) || Number(value) > 65_535) {
    fail(`PORT must be a port number from 0 to 65535 (0 picks a free one); got "${value.slice(0, 20)}"`);
  }
  return Number(value);
}

function isSet(env: Env, name: string): boolean {
  return (env[name] ?? '').trim() !== '';
}

/** The embedded defaults: simulator, demo app, demo client key, in-process cache. */
async function embeddedSetup(): Promise<Setup> {
  const secret = randomBytes(16).toString('hex');
  const clientKey = `demo-client-key-${randomBytes(8).toString('hex')}`;
  const simulator = await startWeChatSimulator({ apps: [{ appid: DEMO_APPID, secret }] });
  const weComSecret = randomBytes(16).toString('hex');
  const wecom = await startWeComSimulator({
    apps: [{ corpid: DEMO_CORPID, agentid: '1000002', secret: weComSecret }],
  });
  const credentials = parseCredentials(
    JSON.stringify({
      apps: [
        { appid: DEMO_APPID, secret, tickets: ['jsapi'] },
        {
          kind: 'wecom',
          corpid: DEMO_CORPID,
          agentid: '1000002',
          secret: weComSecret,
          tickets: ['jsapi', 'agent_config'],
        },
      ],
      clients: [
        { id: 'local', key_sha256: sha256(clientKey).toString('hex'), appids: [DEMO_APPID, DEMO_WECOM_APP] },
      ],
    }),
  );
  const env: Env = {
    ...process.env,
    WECHAT_APPID: DEMO_APPID,
    WECHAT_APPSECRET: secret,
    WECHAT_API_BASE_URL: simulator.baseUrl,
    WECOM_API_BASE_URL: wecom.baseUrl,
    WECHAT_CLIENT_KEY: clientKey,
    WECHAT_TICKETS: 'jsapi',
  };
  // With a Memcached given, keep this run's records apart from earlier runs (another simulator's tokens).
  if (isSet(process.env, 'MEMCACHED_SERVERS') && !isSet(process.env, 'CACHE_KEY_PREFIX')) {
    env.CACHE_KEY_PREFIX = `demo-${randomBytes(4).toString('hex')}`;
  }
  const config = loadConfig(env);
  return {
    env,
    simulator,
    wecom: { simulator: wecom, secrets: { get: async () => credentials } },
    describe: [
      `WeChat      bundled simulator at ${simulator.baseUrl} (demo app ${DEMO_APPID}, jsapi ticket)`,
      `WeCom       bundled simulator at ${wecom.baseUrl} (demo app ${DEMO_WECOM_APP}, jsapi and agent_config tickets)`,
      `cache       ${config.memcachedServers ? `Memcached at ${config.memcachedServers.join(', ')} (prefix ${config.cacheKeyPrefix})` : 'in-process (set MEMCACHED_SERVERS to use Memcached)'}`,
      `client key  ${clientKey} (a demo key, valid for this run only)`,
    ],
    keyForCurl: clientKey,
    appid: DEMO_APPID,
  };
}

/** Real configuration: the environment goes to the handler untouched. */
function realSetup(): Setup {
  let config: ReturnType<typeof loadConfig>;
  try {
    config = loadConfig(process.env);
  } catch (err) {
    fail(`configuration invalid: ${err instanceof Error ? err.message : String(err)}`);
  }
  const source = config.credentials;
  const credentials =
    source.kind === 'secrets_manager'
      ? `Secrets Manager secret ${source.secretId}`
      : `WECHAT_APPID ${source.appid} and WECHAT_APPSECRET (${source.clientKey ? 'client key from WECHAT_CLIENT_KEY' : 'no WECHAT_CLIENT_KEY: HTTP routes will answer 401'})`;
  return {
    env: undefined,
    simulator: undefined,
    describe: [
      `WeChat      using WeChat at ${config.wechatApiBaseUrl}`,
      `cache       ${config.memcachedServers ? `Memcached at ${config.memcachedServers.join(', ')}` : 'in-process cache (MEMCACHED_SERVERS not set)'}`,
      `credentials ${credentials}`,
    ],
    keyForCurl:
      source.kind === 'env' && source.clientKey ? '$WECHAT_CLIENT_KEY' : '<a client key from the secret>',
    appid: source.kind === 'env' ? source.appid : '<appid>',
  };
}

/** The API Gateway HTTP API (payload 2.0) event of a request, as API Gateway builds it. */
export function toEventV2(req: IncomingMessage, body: Buffer, requestId: string): Record<string, unknown> {
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  const rawPath = q >= 0 ? url.slice(0, q) : url;
  const rawQueryString = q >= 0 ? url.slice(q + 1) : '';
  const headers: Record<string, string> = {};
  let cookies: string[] | undefined;
  for (const [name, value] of Object.entries(req.headers)) {
    if (value === undefined) continue;
    if (name === 'cookie') {
      cookies = (Array.isArray(value) ? value : value.split(';')).map((c) => c.trim()).filter(Boolean);
      continue;
    }
    headers[name.toLowerCase()] = Array.isArray(value) ? value.join(',') : value;
  }
  let queryStringParameters: Record<string, string> | undefined;
  if (rawQueryString !== '') {
    queryStringParameters = {};
    for (const [name, value] of new URLSearchParams(rawQueryString)) {
      const prev = queryStringParameters[name];
      queryStringParameters[name] = prev === undefined ? value : `${prev},${value}`;
    }
  }
  let path = rawPath;
  try {
    path = decodeURIComponent(rawPath);
  } catch {
    // keep it raw
  }
  const now = new Date();
  return {
    version: '2.0',
    routeKey: '$default',
    rawPath,
    rawQueryString,
    ...(cookies ? { cookies } : {}),
    headers,
    ...(queryStringParameters ? { queryStringParameters } : {}),
    requestContext: {
      accountId: 'anonymous',
      apiId: 'local',
      domainName: headers.host ?? HOST,
      domainPrefix: 'local',
      http: {
        method: req.method ?? 'GET',
        path,
        protocol: `HTTP/${req.httpVersion}`,
        sourceIp: '127.0.0.1',
        userAgent: headers['user-agent'] ?? '',
      },
      requestId,
      routeKey: '$default',
      stage: '$default',
      time: now.toISOString(),
      timeEpoch: now.getTime(),
    },
    ...(body.length > 0 ? { body: body.toString('utf8') } : {}),
    isBase64Encoded: false,
  };
}

interface ProxyResultLike {
  statusCode: number;
  headers?: Record<string, string | number | boolean>;
  body?: string;
  isBase64Encoded?: boolean;
  cookies?: string[];
}

function isProxyResult(value: unknown): value is ProxyResultLike {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as { statusCode?: unknown }).statusCode === 'number'
  );
}

function send(
  res: ServerResponse,
  status: number,
  headers: Record<string, string | number | boolean>,
  body: Buffer,
): void {
  if (res.headersSent) return;
  res.writeHead(status, { ...headers, 'content-length': body.length });
  res.end(body);
}

/** Writes a handler result back the way API Gateway does (a non-proxy object becomes a JSON 200). */
function writeResult(res: ServerResponse, result: unknown): number {
  if (isProxyResult(result)) {
    const body = Buffer.from(result.body ?? '', result.isBase64Encoded ? 'base64' : 'utf8');
    if (result.cookies?.length) res.setHeader('set-cookie', result.cookies);
    send(res, result.statusCode, result.headers ?? {}, body);
    return result.statusCode;
  }
  const body = Buffer.from(typeof result === 'string' ? result : JSON.stringify(result ?? null));
  send(res, 200, { 'content-type': 'application/json' }, body);
  return 200;
}

async function serve(handler: Handler, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const startedAt = Date.now();
  const requestId = randomUUID();
  let status = 500;
  try {
    const body = await readBody(req, MAX_BODY_BYTES);
    const event = toEventV2(req, body, requestId);
    const context = {
      awsRequestId: requestId,
      functionName: 'wechat-token-service-local',
      getRemainingTimeInMillis: () => Math.max(0, TIMEOUT_MS - (Date.now() - startedAt)),
    };
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), TIMEOUT_MS);
    });
    const result = await Promise.race([handler(event, context), timedOut]).finally(() => clearTimeout(timer));
    if (result === 'timeout') {
      status = 504;
      send(
        res,
        504,
        { 'content-type': 'application/json' },
        Buffer.from('{"message":"Endpoint request timed out"}'),
      );
    } else {
      status = writeResult(res, result);
    }
  } catch (err) {
    // What API Gateway answers when the function throws; the detail goes to the console only.
    status = 500;
    process.stderr.write(
      `handler threw: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
    );
    send(
      res,
      500,
      { 'content-type': 'application/json' },
      Buffer.from('{"message":"Internal Server Error"}'),
    );
  }
  // Method and path only: a query string or body could carry a token.
  const path = (req.url ?? '/').split('?')[0];
  process.stdout.write(`${req.method} ${path} → ${status} (${Date.now() - startedAt} ms)\n`);
}

function listen(server: ReturnType<typeof createServer>, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, HOST, () => {
      server.off('error', reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

function quote(text: string): string {
  return `'${text.replace(/'/g, `'\\''`)}'`;
}

async function main(): Promise<void> {
  const port = readPort(process.env.PORT);
  const configured =
    isSet(process.env, 'WECHAT_SECRET_ID') ||
    isSet(process.env, 'WECHAT_APPID') ||
    isSet(process.env, 'WECHAT_APPSECRET');
  const setup = configured ? realSetup() : await embeddedSetup();
  const handler = createHandler({
    ...(setup.env ? { env: setup.env } : {}),
    ...(setup.wecom ? { secrets: setup.wecom.secrets } : {}),
  });

  const server = createServer((req, res) => {
    void serve(handler, req, res);
  });
  let actualPort: number;
  try {
    actualPort = await listen(server, port);
  } catch (err) {
    await setup.simulator?.close();
    await setup.wecom?.simulator.close();
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EADDRINUSE')
      fail(
        `port ${port} on ${HOST} is already in use: stop what uses it or set PORT (e.g. PORT=3001 npm start)`,
      );
    if (code === 'EACCES') fail(`not allowed to listen on port ${port}: use a port above 1023 (PORT=3000)`);
    fail(`cannot listen on ${HOST}:${port}: ${err instanceof Error ? err.message : String(err)}`);
  }

  let stopping = false;
  const stop = (reason: string, quiet = false) => {
    if (stopping) return;
    stopping = true;
    if (!quiet) process.stdout.write(`\n${reason}: stopping\n`);
    const done = () => process.exit(0);
    // Memcached connections of the handler would keep the process alive: exit once the server is closed.
    const force = setTimeout(done, 3000);
    force.unref();
    server.close();
    server.closeAllConnections();
    Promise.all([setup.simulator?.close(), setup.wecom?.simulator.close()])
      .catch(() => {})
      .finally(done);
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
  // `npm start` execs node, so npm forwards SIGINT and SIGTERM here. Were npm killed outright, or the
  // command run by a shell that does not exec, this process would outlive its parent and keep the
  // port: stop once the parent is gone (quietly: nobody reads stdout any more).
  const parentPid = process.ppid;
  setInterval(() => {
    if (process.ppid !== parentPid) stop('parent exited', true);
  }, 500).unref();

  const base = `http://${HOST}:${actualPort}`;
  // A reference to an environment variable must stay expandable by the shell.
  const header = `Authorization: Bearer ${setup.keyForCurl}`;
  const auth = header.includes('$') ? `"${header}"` : quote(header);
  const lines = [
    '',
    'wechat-token-service: the Lambda handler behind a local API Gateway (HTTP API, payload 2.0)',
    `  listening   ${base}`,
    ...setup.describe.map((line) => `  ${line}`),
    '',
    'Try:',
    `  curl -H ${auth} ${quote(`${base}/token?appid=${setup.appid}`)}`,
    `  curl ${quote(`${base}/healthz`)}`,
    `  curl -X POST -H ${auth} -H 'content-type: application/json' -d ${quote(JSON.stringify({ appid: setup.appid, url: 'https://example.com/page' }))} ${quote(`${base}/jssdk/config`)}`,
    ...(setup.wecom
      ? [
          '',
          'WeCom (the app corpid:agentid; wx.agentConfig with "agent_config":true):',
          `  curl -H ${auth} ${quote(`${base}/token?appid=${DEMO_WECOM_APP}`)}`,
          `  curl -X POST -H ${auth} -H 'content-type: application/json' -d ${quote(JSON.stringify({ appid: DEMO_WECOM_APP, url: 'https://example.com/page', agent_config: true }))} ${quote(`${base}/jssdk/config`)}`,
        ]
      : []),
    '',
    'Ctrl-C stops it.',
    '',
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
}

await main();
