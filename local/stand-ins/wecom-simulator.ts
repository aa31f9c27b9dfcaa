/**
 * A local stand-in for WeCom's (企业微信) token APIs, served over real HTTP (node:http only) on its own
 * port: point `WECOM_API_BASE_URL` at {@link WeComSimulator.baseUrl}. WeChat's own endpoints are in
 * wechat-simulator.ts; the two share nothing, as WeChat and WeCom share nothing.
 *
 * Endpoints (wechat-facts §6):
 * - `GET /cgi-bin/gettoken?corpid=…&corpsecret=…` → `{"errcode":0,"errmsg":"ok","access_token":"…","expires_in":7200}`;
 *   every app (secret) has its own token. The current documentation no longer says that a call within
 *   the token's life returns the same token: by default each call issues a new token and leaves the
 *   earlier ones valid until they expire (nothing documents that a call ends them); with
 *   `sameTokenWhileValid` a call returns the live token with its remaining `expires_in` (the older text).
 * - `GET /cgi-bin/get_jsapi_ticket?access_token=…` (the corp's ticket, for wx.config) and
 *   `GET /cgi-bin/ticket/get?access_token=…&type=agent_config` (the app's, for wx.agentConfig): the
 *   same ticket while it lives, answered with the full `expires_in`; each kind at most
 *   `ticketHourlyLimitPerCorp` fetches an hour per corp and `ticketHourlyLimitPerApp` per app
 *   (400 and 100), then 45009.
 * - `GET /cgi-bin/get_api_domain_ip?access_token=…`: a business API that checks the token.
 *
 * Errors are HTTP 200 with `{"errcode":N,"errmsg":"…"}`: 41002/41004 missing corpid/secret, 40013
 * unknown corpid, 40001 wrong secret, 40091 a secret of another corp, 41001 missing token, 40014 a
 * token never issued or revoked ({@link WeComSimulator.revoke}: WeCom's early invalidation), 42001
 * expired, 45009 frequency limit (gettoken: `gettokenPerMinutePerCorp`), and whatever is queued with
 * {@link WeComSimulator.inject} (60020 names `egressIp` as WeCom does, 45033, -1, gateway errors,
 * resets, latency). All times use the injectable `now()`. Nothing is written to the console.
 */
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { readBody } from '../read-body.ts';
import type { SimulatorFault } from './wechat-simulator.ts';

/** A WeCom self-built app; its service-side id is `corpid:agentid`. */
export interface WeComSimulatorApp {
  corpid: string;
  agentid: string;
  secret: string;
}

export interface WeComSimulatorOptions {
  apps: WeComSimulatorApp[];
  /** Clock in epoch ms (default `Date.now`). */
  now?: () => number;
  /** `expires_in` of a new token (default 7200). */
  tokenLifetimeSeconds?: number;
  /** `expires_in` of a new ticket (default 7200). */
  ticketLifetimeSeconds?: number;
  /** gettoken returns the live token (remaining `expires_in`) instead of a new one (default false). */
  sameTokenWhileValid?: boolean;
  /** Fetches of one ticket kind per corp per sliding hour (default 400). */
  ticketHourlyLimitPerCorp?: number;
  /** Fetches of one ticket kind per app per sliding hour (default 100). */
  ticketHourlyLimitPerApp?: number;
  /** gettoken calls per corp per sliding minute (default 10 000). */
  gettokenPerMinutePerCorp?: number;
  /** The caller IP WeCom reports in 60020 (default `203.0.113.7`). */
  egressIp?: string;
  host?: string;
}

export type WeComEndpoint = 'gettoken' | 'jsapi_ticket' | 'agent_config_ticket' | 'business';
export type WeComTicketType = 'jsapi' | 'agent_config';

/** Requests received, per endpoint, whatever their outcome. */
export interface WeComCallCounters {
  gettoken: number;
  jsapiTicket: number;
  agentConfigTicket: number;
  business: number;
  total: number;
}

/**
 * A queued fault, as the WeChat simulator's (consumed in order by the first matching requests);
 * `errmsg` defaults to WeCom's text (60020 names the egress IP), `appid` is `corpid:agentid`.
 */
export type WeComFault = Omit<SimulatorFault, 'endpoint'> & { endpoint: WeComEndpoint | 'any' };

export interface WeComSimulator {
  readonly baseUrl: string;
  readonly calls: WeComCallCounters;
  /** Counters of one app, `corpid:agentid` (zero for an app never seen). */
  callsFor(appid: string): WeComCallCounters;
  resetCounters(): void;
  tokenStatus(token: string): 'valid' | 'revoked' | 'expired' | 'unknown';
  /** Tokens issued for the app, oldest first. */
  tokensIssued(appid: string): string[];
  /** Tickets of that kind issued for the app, oldest first. */
  ticketsIssued(appid: string, type: WeComTicketType): string[];
  /** WeCom invalidates a token early ("for operational reasons"): it answers 40014 from now on. */
  revoke(token: string): void;
  inject(fault: WeComFault): void;
  clearFaults(): void;
  close(): Promise<void>;
}

const MINUTE_MS = 60_000;
const HOUR_MS = 3_600_000;

const ERRMSG: Record<number, string> = {
  [-1]: 'system busy',
  40001: 'invalid credential',
  40013: 'invalid corpid',
  40014: 'invalid access_token',
  40091: 'secret is invalid',
  41001: 'access_token missing',
  41002: 'corpid missing',
  41004: 'corpsecret missing',
  42001: 'access_token expired',
  45009: 'api freq out of limit',
  45033: 'api concurrent out of limit',
  60020: 'not allow to access from your ip',
};

interface AppState extends WeComSimulatorApp {
  id: string;
  tokens: string[];
  tickets: Map<WeComTicketType, { value: string; expiresAtMs: number }>;
  ticketHistory: Map<WeComTicketType, string[]>;
  /** When each ticket kind was fetched, for the hourly limits. */
  ticketCalls: Map<string, number[]>;
}

interface Token {
  app: AppState;
  expiresAtMs: number;
  revoked: boolean;
}

type Reply = { status: number; body: string; type: string };

class Simulator implements WeComSimulator {
  baseUrl = '';
  readonly calls = zero();
  readonly #now: () => number;
  readonly #options: WeComSimulatorOptions;
  readonly #apps = new Map<string, AppState>();
  readonly #tokens = new Map<string, Token>();
  readonly #perApp = new Map<string, WeComCallCounters>();
  readonly #gettokenCalls = new Map<string, number[]>();
  readonly #corpTicketCalls = new Map<string, number[]>();
  #faults: Array<{ fault: WeComFault; remaining: number }> = [];
  readonly #server = createServer((req, res) => {
    this.#handle(req, res).catch(() => res.destroy());
  });

  constructor(options: WeComSimulatorOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
    for (const app of options.apps) {
      const id = `${app.corpid}:${app.agentid}`;
      this.#apps.set(id, {
        ...app,
        id,
        tokens: [],
        tickets: new Map(),
        ticketHistory: new Map(),
        ticketCalls: new Map(),
      });
    }
    this.#server.on('clientError', (_err: Error, socket: Socket) => socket.destroy());
  }

  async listen(host: string): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(0, host, () => resolve());
    });
    const address = this.#server.address() as AddressInfo;
    this.baseUrl = `http://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`;
  }

  callsFor(appid: string): WeComCallCounters {
    return { ...(this.#perApp.get(appid) ?? zero()) };
  }

  resetCounters(): void {
    Object.assign(this.calls, zero());
    this.#perApp.clear();
  }

  tokenStatus(token: string): 'valid' | 'revoked' | 'expired' | 'unknown' {
    const t = this.#tokens.get(token);
    if (!t) return 'unknown';
    if (t.revoked) return 'revoked';
    return this.#now() >= t.expiresAtMs ? 'expired' : 'valid';
  }

  tokensIssued(appid: string): string[] {
    return [...(this.#apps.get(appid)?.tokens ?? [])];
  }

  ticketsIssued(appid: string, type: WeComTicketType): string[] {
    return [...(this.#apps.get(appid)?.ticketHistory.get(type) ?? [])];
  }

  revoke(token: string): void {
    const t = this.#tokens.get(token);
    if (!t) throw new Error('revoke: a token this simulator never issued');
    t.revoked = true;
  }

  inject(fault: WeComFault): void {
    this.#faults.push({ fault: { ...fault }, remaining: fault.times ?? 1 });
  }

  clearFaults(): void {
    this.#faults = [];
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.#server.close(() => resolve());
      this.#server.closeAllConnections();
    });
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    await readBody(req, 64 * 1024);
    this.calls.total++;
    const url = new URL(req.url ?? '/', 'http://localhost');
    const q = url.searchParams;
    const endpoint = endpointOf(url.pathname, q);
    if (!endpoint) return this.#send(res, json(404, { errcode: -1, errmsg: `no such api ${url.pathname}` }));
    const token = q.get('access_token');
    const app =
      endpoint === 'gettoken'
        ? this.#apps.get(`${q.get('corpid')}:${this.#agentOf(q.get('corpid'), q.get('corpsecret'))}`)
        : token
          ? this.#tokens.get(token)?.app
          : undefined;
    this.#count(endpoint, app?.id);
    const fault = this.#takeFault(endpoint, app?.id);
    if (fault?.latencyMs) await new Promise((resolve) => setTimeout(resolve, fault.latencyMs));
    if (fault?.reset) return void req.socket.destroy();
    if (fault?.httpStatus !== undefined) {
      return this.#send(res, {
        status: fault.httpStatus,
        body: '<html>gateway error</html>',
        type: 'text/html',
      });
    }
    if (fault?.errcode !== undefined) return this.#send(res, this.#error(fault.errcode, fault.errmsg));
    if (req.method !== 'GET') return this.#send(res, this.#error(43001));
    switch (endpoint) {
      case 'gettoken':
        return this.#send(res, this.#gettoken(q));
      case 'jsapi_ticket':
        return this.#send(res, this.#ticket(token, 'jsapi'));
      case 'agent_config_ticket':
        return this.#send(res, this.#ticket(token, 'agent_config'));
      case 'business': {
        const checked = this.#check(token);
        return this.#send(res, 'status' in checked ? checked : ok({ ip_list: ['182.254.11.176'] }));
      }
    }
  }

  /** The agent whose secret this is, in that corp. */
  #agentOf(corpid: string | null, secret: string | null): string | undefined {
    for (const app of this.#apps.values()) {
      if (app.corpid === corpid && app.secret === secret) return app.agentid;
    }
    return undefined;
  }

  #gettoken(q: URLSearchParams): Reply {
    const corpid = q.get('corpid');
    const secret = q.get('corpsecret');
    if (!corpid) return this.#error(41002);
    if (!secret) return this.#error(41004);
    const apps = [...this.#apps.values()];
    if (!apps.some((a) => a.corpid === corpid)) return this.#error(40013);
    const app = apps.find((a) => a.corpid === corpid && a.secret === secret);
    if (!app) return this.#error(apps.some((a) => a.secret === secret) ? 40091 : 40001);
    const now = this.#now();
    if (
      !allowed(this.#gettokenCalls, corpid, now, MINUTE_MS, this.#options.gettokenPerMinutePerCorp ?? 10_000)
    ) {
      return this.#error(45009);
    }
    record(this.#gettokenCalls, corpid, now);
    const lifeMs = (this.#options.tokenLifetimeSeconds ?? 7200) * 1000;
    const live = app.tokens.at(-1);
    if (this.#options.sameTokenWhileValid && live && this.tokenStatus(live) === 'valid') {
      const expiresAtMs = this.#tokens.get(live)?.expiresAtMs ?? now;
      return ok({ access_token: live, expires_in: Math.floor((expiresAtMs - now) / 1000) });
    }
    const token = `WC_${randomBytes(72).toString('base64url')}`;
    this.#tokens.set(token, { app, expiresAtMs: now + lifeMs, revoked: false });
    app.tokens.push(token);
    return ok({ access_token: token, expires_in: lifeMs / 1000 });
  }

  #check(token: string | null): Token | Reply {
    if (!token) return this.#error(41001);
    const t = this.#tokens.get(token);
    if (!t || t.revoked) return this.#error(40014);
    if (this.#now() >= t.expiresAtMs) return this.#error(42001);
    return t;
  }

  #ticket(token: string | null, type: WeComTicketType): Reply {
    const checked = this.#check(token);
    if ('status' in checked) return checked;
    const { app } = checked;
    const now = this.#now();
    const corpKey = `${app.corpid}:${type}`;
    if (
      !allowed(app.ticketCalls, type, now, HOUR_MS, this.#options.ticketHourlyLimitPerApp ?? 100) ||
      !allowed(this.#corpTicketCalls, corpKey, now, HOUR_MS, this.#options.ticketHourlyLimitPerCorp ?? 400)
    ) {
      return this.#error(45009);
    }
    record(app.ticketCalls, type, now);
    record(this.#corpTicketCalls, corpKey, now);
    const lifeSeconds = this.#options.ticketLifetimeSeconds ?? 7200;
    let ticket = app.tickets.get(type);
    if (!ticket || now >= ticket.expiresAtMs) {
      ticket = {
        value: `WT_${randomBytes(48).toString('base64url')}`,
        expiresAtMs: now + lifeSeconds * 1000,
      };
      app.tickets.set(type, ticket);
      app.ticketHistory.set(type, [...(app.ticketHistory.get(type) ?? []), ticket.value]);
    }
    return ok({ ticket: ticket.value, expires_in: lifeSeconds });
  }

  #count(endpoint: WeComEndpoint, appid: string | undefined): void {
    const field = COUNTER[endpoint];
    this.calls[field]++;
    if (appid === undefined) return;
    const own = this.#perApp.get(appid) ?? zero();
    own[field]++;
    own.total++;
    this.#perApp.set(appid, own);
  }

  #takeFault(endpoint: WeComEndpoint, appid: string | undefined): WeComFault | undefined {
    const i = this.#faults.findIndex(
      (q) =>
        (q.fault.endpoint === 'any' || q.fault.endpoint === endpoint) &&
        (q.fault.appid === undefined || q.fault.appid === appid),
    );
    const queued = this.#faults[i];
    if (!queued) return undefined;
    if (--queued.remaining <= 0) this.#faults.splice(i, 1);
    return queued.fault;
  }

  #error(errcode: number, errmsg?: string): Reply {
    const hint = `[${Math.floor(this.#now() / 1000)}${randomBytes(3).toString('hex')}]`;
    const text =
      errmsg ??
      (errcode === 60020
        ? `not allow to access from your ip, hint: ${hint}, from ip: ${this.#options.egressIp ?? '203.0.113.7'}, ` +
          'more info at https://open.work.weixin.qq.com/devtool/query?e=60020'
        : `${ERRMSG[errcode] ?? 'error'}, hint: ${hint}, more info at https://open.work.weixin.qq.com/devtool/query?e=${errcode}`);
    return json(200, { errcode, errmsg: text });
  }

  #send(res: ServerResponse, reply: Reply): void {
    if (res.destroyed) return;
    res.writeHead(reply.status, {
      'Content-Type': reply.type,
      'Content-Length': Buffer.byteLength(reply.body),
    });
    res.end(reply.body);
  }
}

const COUNTER: Record<WeComEndpoint, Exclude<keyof WeComCallCounters, 'total'>> = {
  gettoken: 'gettoken',
  jsapi_ticket: 'jsapiTicket',
  agent_config_ticket: 'agentConfigTicket',
  business: 'business',
};

function endpointOf(path: string, q: URLSearchParams): WeComEndpoint | undefined {
  if (path === '/cgi-bin/gettoken') return 'gettoken';
  if (path === '/cgi-bin/get_jsapi_ticket') return 'jsapi_ticket';
  if (path === '/cgi-bin/ticket/get' && q.get('type') === 'agent_config') return 'agent_config_ticket';
  if (path === '/cgi-bin/get_api_domain_ip') return 'business';
  return undefined;
}

/** Whether fewer than `limit` calls under `key` fell in the `windowMs` before `now`. */
function allowed(
  calls: Map<string, number[]>,
  key: string,
  now: number,
  windowMs: number,
  limit: number,
): boolean {
  const recent = (calls.get(key) ?? []).filter((t) => now - t < windowMs);
  calls.set(key, recent);
  return recent.length < limit;
}

function record(calls: Map<string, number[]>, key: string, now: number): void {
  calls.set(key, [...(calls.get(key) ?? []), now]);
}

function zero(): WeComCallCounters {
  return { gettoken: 0, jsapiTicket: 0, agentConfigTicket: 0, business: 0, total: 0 };
}

function json(status: number, body: unknown): Reply {
  return { status, body: JSON.stringify(body), type: 'application/json; charset=UTF-8' };
}

function ok(fields: Record<string, unknown>): Reply {
  return json(200, { errcode: 0, errmsg: 'ok', ...fields });
}

/** Starts a WeCom simulator on `options.host` (default `127.0.0.1`) and a random port. */
export async function startWeComSimulator(options: WeComSimulatorOptions): Promise<WeComSimulator> {
  const simulator = new Simulator(options);
  await simulator.listen(options.host ?? '127.0.0.1');
  return simulator;
}
