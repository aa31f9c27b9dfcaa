/**
 * One consumer process (`node --import tsx consumer-worker.ts`): the built client
 * (`wechat-token-service/client`, i.e. dist/client.mjs) over HTTP or direct invoke, used directly
 * (`withToken` + fetch) or through one of the SDK adapters, making business calls against the
 * simulator at an even pace. Configuration comes in WTS_CONSUMER (JSON); the process prints
 * `@@ready` after its first successful call and `@@result <json>` at the end — counts only, never a
 * token.
 *
 * What it measures, in the process itself:
 * - every call to the service (through a recording transport), and the promise each answer made;
 * - every request that carries an access token to WeChat, at the moment it is sent (Node's
 *   `http.request`, which the three SDKs end in; `fetch` in the direct mode): a token sent at or
 *   after the `expires_at` the service promised for it, or one the service never handed out, counts.
 */
import http from 'node:http';
import { performance } from 'node:perf_hooks';
import type * as ClientModule from '../../../lib/client/exports.ts';
import type { ServiceRequest } from '../../../lib/client/protocol.ts';
import type { TokenTransport } from '../../../lib/client/transport.ts';
import { type SdkName, wireSdk } from '../../unit/client/sdk-business.ts';

export interface ConsumerConfig {
  id: number;
  mode: 'client' | SdkName;
  channel: 'http' | 'invoke';
  serviceUrl: string;
  key: string;
  functionName: string;
  appid: string;
  wechatBaseUrl: string;
  calls: number;
  durationMs: number;
}

export interface ServiceCallRecord {
  action: ServiceRequest['action'];
  sentAtMs: number;
  expiresIn?: number;
  expiresAtMs?: number;
}

export interface ConsumerResult {
  id: number;
  mode: ConsumerConfig['mode'];
  channel: ConsumerConfig['channel'];
  ok: number;
  failed: number;
  /** Error codes (or names) of failed calls, never their messages: an SDK may put the URL in one. */
  failures: string[];
  /** Requests that carried an access token to WeChat. */
  tokenRequests: number;
  /** ...of which sent at or after the token's expires_at. */
  lateTokens: number;
  /** ...of which with a token the service never handed this process. */
  unknownTokens: number;
  serviceCalls: ServiceCallRecord[];
  /** get_token calls made while the previous answer was still good for more than 50 ms. */
  earlyGets: number;
  /** Business call latency, ms: p50, p99. */
  latencyMs: [number, number];
}

// The built client, resolved as a consumer resolves it (the package's "./client" export).
const CLIENT_MODULE = 'wechat-token-service/client';

async function main(): Promise<void> {
  const config = JSON.parse(process.env.WTS_CONSUMER ?? '') as ConsumerConfig;
  const dist = (await import(CLIENT_MODULE)) as typeof ClientModule;

  const promised = new Map<string, number>();
  const serviceCalls: ServiceCallRecord[] = [];
  const inner =
    config.channel === 'http'
      ? dist.httpTransport({ baseUrl: config.serviceUrl, key: config.key })
      : dist.invokeTransport({ functionName: config.functionName });
  const transport: TokenTransport = {
    async send(request, call) {
      const record: ServiceCallRecord = { action: request.action, sentAtMs: Date.now() };
      serviceCalls.push(record);
      const body = await inner.send(request, call);
      const token = body as { access_token?: unknown; expires_in?: unknown; expires_at?: unknown };
      if (typeof token.access_token === 'string' && typeof token.expires_at === 'number') {
        record.expiresIn = token.expires_in as number;
        record.expiresAtMs = token.expires_at * 1000;
        promised.set(token.access_token, Math.max(promised.get(token.access_token) ?? 0, record.expiresAtMs));
      }
      return body;
    },
  };
  const client = new dist.TokenClient({ appid: config.appid, transport });

  let tokenRequests = 0;
  let lateTokens = 0;
  let unknownTokens = 0;
  const checkSent = (token: string) => {
    tokenRequests++;
    const until = promised.get(token);
    if (until === undefined) unknownTokens++;
    else if (Date.now() >= until) lateTokens++;
  };
  const wechat = new URL(config.wechatBaseUrl);
  const request = http.request;
  // biome-ignore lint/suspicious/noExplicitAny: http.request has several overloads; arguments pass through unchanged
  (http as { request: any }).request = (...args: any[]) => {
    const [first] = args;
    const target =
      typeof first === 'string' || first instanceof URL
        ? new URL(first)
        : new URL(first?.path ?? '/', `http://${first?.hostname ?? first?.host}:${first?.port}`);
    if (target.port === wechat.port) {
      const token = target.searchParams.get('access_token');
      if (token) checkSent(token);
    }
    return (request as (...a: unknown[]) => http.ClientRequest)(...args);
  };

  const call: () => Promise<unknown> =
    config.mode === 'client'
      ? async () => {
          const body = (await client.withToken(async (token) => {
            checkSent(token);
            const url = `${config.wechatBaseUrl}/cgi-bin/get_api_domain_ip?access_token=${encodeURIComponent(token)}`;
            return (await fetch(url)).json();
          })) as { errcode?: number };
          if (body.errcode) throw Object.assign(new Error('WeChat refused the call'), { code: body.errcode });
          return body;
        }
      : wireSdk(config.mode, client, config.wechatBaseUrl, dist).call;

  let ok = 0;
  const failures: string[] = [];
  const latencies: number[] = [];
  let ready = false;
  const startedAt = Date.now();
  const running: Promise<void>[] = [];
  for (let i = 0; i < config.calls; i++) {
    const dueAt = startedAt + (i * config.durationMs) / config.calls;
    const wait = dueAt - Date.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    const began = performance.now();
    running.push(
      call().then(
        () => {
          ok++;
          latencies.push(performance.now() - began);
          if (!ready) {
            ready = true;
            process.stdout.write('@@ready\n');
          }
        },
        (err: unknown) => {
          const e = err as { code?: unknown; name?: unknown };
          failures.push(String(e?.code ?? e?.name ?? 'unknown'));
        },
      ),
    );
  }
  await Promise.all(running);

  let earlyGets = 0;
  let previous: ServiceCallRecord | undefined;
  for (const record of serviceCalls) {
    if (
      record.action === 'get_token' &&
      previous?.expiresAtMs !== undefined &&
      previous.expiresIn !== undefined
    ) {
      const skewMs = Math.min(2_000, previous.expiresIn * 100);
      const goodUntil =
        Math.min(previous.expiresAtMs, previous.sentAtMs + previous.expiresIn * 1000) - skewMs;
      if (record.sentAtMs < goodUntil - 50) earlyGets++;
    }
    if (record.expiresAtMs !== undefined) previous = record;
  }
  latencies.sort((a, b) => a - b);
  const at = (q: number) => Math.round((latencies[Math.floor(q * (latencies.length - 1))] ?? 0) * 10) / 10;
  const result: ConsumerResult = {
    id: config.id,
    mode: config.mode,
    channel: config.channel,
    ok,
    failed: failures.length,
    failures: failures.slice(0, 10),
    tokenRequests,
    lateTokens,
    unknownTokens,
    serviceCalls,
    earlyGets,
    latencyMs: [at(0.5), at(0.99)],
  };
  process.stdout.write(`@@result ${JSON.stringify(result)}\n`);
}

await main();
