/**
 * `npm run bench:client`: what the consumer client (dist/client.mjs, built just before) costs a
 * business call. Not a test: it reports figures and how they were obtained, and fails on nothing.
 *
 *   overhead   `withToken(fn)` on a warm cache against calling `fn` directly, both awaited, with an
 *              in-memory transport (no I/O): nanoseconds per call, median of several rounds
 *   per 1000   business calls (`withToken` + fetch of the simulator's get_api_domain_ip) against the
 *              service — its handler behind a local HTTP server (API Gateway payload 2.0) with the
 *              in-process cache, and the bundled WeChat simulator — counting the service calls:
 *              7200-s tokens and default settings, as fast as calls go; then 20-s tokens at an even
 *              pace (a lifetime compressed 360 times, as the soak tests do)
 *
 * Writes bench/results/client-latest.json. Environment: BENCH_CLIENT_PACED_SECONDS (default 30).
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createHandler } from '../handler/index.ts';
import type * as ClientModule from '../lib/client/exports.ts';
import type { ServiceRequest } from '../lib/client/protocol.ts';
import type { TokenTransport } from '../lib/client/transport.ts';
import { readBody } from '../local/read-body.ts';
import { startWeChatSimulator } from '../local/stand-ins/wechat-simulator.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const RESULTS = join(ROOT, 'bench', 'results', 'client-latest.json');
const APPID = 'wx0123456789abcdef';
const SECRET = `bench-secret-${randomBytes(8).toString('hex')}`;
const KEY = `bench-client-key-${randomBytes(8).toString('hex')}`;

const OVERHEAD_CALLS = 1_000_000;
const OVERHEAD_ROUNDS = 7;
const FAST_CALLS = 10_000;
const PACED_CALLS = 1_000;
const PACED_SECONDS = Number(process.env.BENCH_CLIENT_PACED_SECONDS ?? 30);

const log = (line: string) => process.stdout.write(`${line}\n`);
// The built client, as a consumer imports it (the package's "./client" export).
const client = (await import('wechat-token-service/client' as string)) as typeof ClientModule;

// ---- overhead of withToken on a warm cache -------------------------------------------------------

async function overhead(): Promise<{ directNs: number; withTokenNs: number; getTokenNs: number }> {
  const transport: TokenTransport = {
    send: async () => ({
      access_token: 'bench-token',
      expires_in: 3600,
      expires_at: Math.floor(Date.now() / 1000) + 3600,
    }),
  };
  const tokens = new client.TokenClient({ appid: APPID, transport });
  await tokens.getToken();
  // The business call: an async function, as every real one is; its own cost is the baseline.
  let sink = 0;
  const business = async (token: string) => {
    sink += token.length;
    return sink;
  };
  const time = async (run: () => Promise<unknown>): Promise<number> => {
    const start = process.hrtime.bigint();
    for (let i = 0; i < OVERHEAD_CALLS; i++) await run();
    return Number(process.hrtime.bigint() - start) / OVERHEAD_CALLS;
  };
  const direct: number[] = [];
  const wrapped: number[] = [];
  const get: number[] = [];
  // Warm-up round (JIT), then alternating measured rounds.
  await time(() => business('bench-token'));
  await time(() => tokens.withToken(business));
  for (let round = 0; round < OVERHEAD_ROUNDS; round++) {
    direct.push(await time(() => business('bench-token')));
    wrapped.push(await time(() => tokens.withToken(business)));
    get.push(await time(() => tokens.getToken()));
  }
  if (sink === 0) throw new Error('unreachable');
  return { directNs: median(direct), withTokenNs: median(wrapped), getTokenNs: median(get) };
}

// ---- service calls per 1000 business calls --------------------------------------------------------

interface Count {
  businessCalls: number;
  failed: number;
  seconds: number;
  serviceCalls: Record<string, number>;
  wechatTokenFetches: number;
  meanPromiseSeconds: number;
}

async function perThousand(options: { tokenLifetimeSeconds: number; pacedSeconds?: number; calls: number }) {
  const sim = await startWeChatSimulator({ apps: [{ appid: APPID, secret: SECRET }] });
  sim.setTokenLifetime(options.tokenLifetimeSeconds);
  const handler = createHandler({
    env: {
      WECHAT_APPID: APPID,
      WECHAT_APPSECRET: SECRET,
      WECHAT_CLIENT_KEY: KEY,
      WECHAT_API_BASE_URL: sim.baseUrl,
      LOG_LEVEL: 'ERROR',
      POWERTOOLS_METRICS_DISABLED: 'true',
    },
    writeLog: () => {},
  });
  const server = createServer((req, res) => {
    void serve(req).then(
      (result) => {
        res.writeHead(result.statusCode, result.headers);
        res.end(result.body);
      },
      () => {
        res.writeHead(500);
        res.end();
      },
    );
  });
  async function serve(req: IncomingMessage) {
    const body = (await readBody(req)).toString('utf8');
    const url = new URL(req.url ?? '/', 'http://localhost');
    const headers: Record<string, string> = {};
    for (const [name, value] of Object.entries(req.headers))
      if (typeof value === 'string') headers[name] = value;
    const method = req.method ?? 'GET';
    const event = {
      version: '2.0',
      routeKey: `${method} ${url.pathname}`,
      rawPath: url.pathname,
      rawQueryString: url.search.slice(1),
      headers,
      ...(url.search ? { queryStringParameters: Object.fromEntries(url.searchParams) } : {}),
      ...(body ? { body } : {}),
      isBase64Encoded: false,
      requestContext: { http: { method, path: url.pathname, sourceIp: '127.0.0.1' }, stage: '$default' },
    };
    const context = { getRemainingTimeInMillis: () => 10_000, awsRequestId: randomBytes(4).toString('hex') };
    return (await handler(event, context)) as {
      statusCode: number;
      headers: Record<string, string>;
      body: string;
    };
  }
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  const serviceCalls: Record<string, number> = {};
  const promises: number[] = [];
  const http = client.httpTransport({ baseUrl, key: KEY });
  const counting: TokenTransport = {
    async send(request: ServiceRequest, call) {
      serviceCalls[request.action] = (serviceCalls[request.action] ?? 0) + 1;
      const answer = (await http.send(request, call)) as { expires_in?: number };
      if (typeof answer.expires_in === 'number') promises.push(answer.expires_in);
      return answer;
    },
  };
  const tokens = new client.TokenClient({ appid: APPID, transport: counting });
  const businessUrl = `${sim.baseUrl}/cgi-bin/get_api_domain_ip?access_token=`;
  const call = () =>
    tokens.withToken(async (token) =>
      (await fetch(businessUrl + encodeURIComponent(token))).json(),
    ) as Promise<{
      errcode?: number;
    }>;

  let failed = 0;
  const startedAt = Date.now();
  for (let i = 0; i < options.calls; i++) {
    if (options.pacedSeconds !== undefined) {
      const wait = startedAt + (i * options.pacedSeconds * 1000) / options.calls - Date.now();
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    }
    const answer = await call();
    if (answer.errcode) failed++;
  }
  const count: Count = {
    businessCalls: options.calls,
    failed,
    seconds: (Date.now() - startedAt) / 1000,
    serviceCalls,
    wechatTokenFetches: sim.calls.token + sim.calls.stableToken,
    meanPromiseSeconds: promises.reduce((a, b) => a + b, 0) / Math.max(1, promises.length),
  };
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
  await sim.close();
  return count;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? 0;
}

const total = (calls: Record<string, number>) => Object.values(calls).reduce((a, b) => a + b, 0);
const per1000 = (c: Count) => (1000 * total(c.serviceCalls)) / c.businessCalls;

log(
  `client benchmark: Node ${process.version}, ${cpus().length} CPUs, load average ${loadavg()[0]?.toFixed(1)}`,
);
const cost = await overhead();
log(
  `withToken on a warm cache: ${(cost.withTokenNs - cost.directNs).toFixed(0)} ns per call over the business call itself ` +
    `(${cost.withTokenNs.toFixed(0)} ns with it, ${cost.directNs.toFixed(0)} ns without; getToken alone ${cost.getTokenNs.toFixed(0)} ns); ` +
    `median of ${OVERHEAD_ROUNDS} rounds × ${OVERHEAD_CALLS.toLocaleString('en')} calls`,
);
const fast = await perThousand({ tokenLifetimeSeconds: 7200, calls: FAST_CALLS });
log(
  `7200-s tokens, default settings: ${per1000(fast).toFixed(2)} service calls per 1000 business calls ` +
    `(${JSON.stringify(fast.serviceCalls)} for ${fast.businessCalls} calls in ${fast.seconds.toFixed(1)} s, ` +
    `${fast.failed} failed; mean promise ${fast.meanPromiseSeconds.toFixed(0)} s; ${fast.wechatTokenFetches} WeChat fetch)`,
);
const paced = await perThousand({
  tokenLifetimeSeconds: 20,
  calls: PACED_CALLS,
  pacedSeconds: PACED_SECONDS,
});
log(
  `20-s tokens, ${PACED_CALLS} calls over ${PACED_SECONDS} s: ${per1000(paced).toFixed(1)} service calls per 1000 business calls ` +
    `(${JSON.stringify(paced.serviceCalls)}, ${paced.failed} failed; mean promise ${paced.meanPromiseSeconds.toFixed(1)} s; ` +
    `${paced.wechatTokenFetches} WeChat fetches). Service calls ≈ run time / promise, whatever the call rate.`,
);
log('reproduce: npm run bench:client (builds dist/ first; BENCH_CLIENT_PACED_SECONDS sets the paced run)');

mkdirSync(join(ROOT, 'bench', 'results'), { recursive: true });
writeFileSync(
  RESULTS,
  `${JSON.stringify(
    {
      node: process.version,
      cpus: cpus().length,
      loadAverage: loadavg()[0],
      overheadNs: cost,
      default7200: { ...fast, per1000: per1000(fast) },
      paced20: { ...paced, per1000: per1000(paced) },
    },
    null,
    2,
  )}\n`,
);
log(`written: ${RESULTS}`);
