/**
 * A faithful local stand-in for WeChat's token APIs, served over real HTTP (node:http only).
 *
 * It implements the classic token (`GET /cgi-bin/token`), the stable token (`POST /cgi-bin/stable_token`),
 * JS-SDK / card tickets (`GET /cgi-bin/ticket/getticket`), the quota reset (`POST /cgi-bin/clear_quota/v2`)
 * getApiQuota with the real counts (`POST /cgi-bin/openapi/quota/get`, wechat-quota-api.ts) and one
 * business endpoint that checks a token (`GET /cgi-bin/get_api_domain_ip`), with WeChat's
 * rotation, overlap, quota and error semantics:
 *
 * - errors are HTTP 200 with `{"errcode":N,"errmsg":"... rid: ..."}`; token successes carry no `errcode`;
 * - every classic fetch issues a new token; the previous one survives at most `overlapSeconds`, the one
 *   before it dies at once;
 * - the stable token is returned unchanged (with its remaining `expires_in`) until its last
 *   `overlapSeconds`; `force_refresh` rotates it, at most 20 times a day and once per 30 s;
 * - a ticket re-fetched within its life is the same ticket with the full `expires_in` again;
 * - quotas are counted per app per calendar day in UTC+8; `clear_quota/v2` (appid + appsecret) clears them,
 *   at most 10 times per app per calendar month (UTC+8) together with the console's reset
 *   ({@link WeChatSimulator.clearQuotaAsOperator}), then answers 48006.
 *
 * All expiry logic uses the injectable `now()` clock, so tests never need to sleep. Faults (errcodes,
 * gateway errors, connection resets, latency) can be queued with {@link WeChatSimulator.inject}.
 * Nothing is ever written to the console.
 *
 * @module
 */

import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { readBody } from '../read-body.ts';
import { type QuotaApiHost, quotaGet } from './wechat-quota-api.ts';

/** An app (appid + AppSecret) the simulator knows. */
export interface SimulatorApp {
  /** The AppID, e.g. `wx0123456789abcdef`. */
  appid: string;
  /** The AppSecret; change it later with {@link WeChatSimulator.setSecret}. */
  secret: string;
}

/** Options of {@link startWeChatSimulator}. */
export interface SimulatorOptions {
  /** The apps WeChat knows; any other appid answers 40013. */
  apps: SimulatorApp[];
  /** Clock in epoch ms (default `Date.now`). All expiry, overlap, interval and quota-day logic uses it. */
  now?: () => number;
  /** `expires_in` of a newly issued classic or stable access token (default 7200). */
  tokenLifetimeSeconds?: number;
  /** `expires_in` of a newly issued ticket (default 7200). */
  ticketLifetimeSeconds?: number;
  /** How long the previous token stays usable after a new one is issued (default 300). */
  overlapSeconds?: number;
  /** Successful `/cgi-bin/token` calls per app per quota day (default 2000). */
  classicDailyQuota?: number;
  /** Successful `/cgi-bin/stable_token` calls per app per quota day (default 500000). */
  stableDailyQuota?: number;
  /** Successful `/cgi-bin/ticket/getticket` calls per app per quota day, all ticket types together (default 100000). */
  ticketDailyQuota?: number;
  /** Stable-token force refreshes per app per quota day (default 20). */
  stableForceDailyLimit?: number;
  /** Minimum seconds between two stable-token force refreshes of one app (default 30). */
  stableForceMinIntervalSeconds?: number;
  /** Quota resets (clear_quota/v2 and the console's) per app per calendar month, UTC+8 (default 10). */
  quotaResetsPerMonth?: number;
  /** Caller IP echoed in the default 40164 errmsg (default `203.0.113.7`). */
  egressIp?: string;
  /** Interface to listen on (default `127.0.0.1`); the port is always random. */
  host?: string;
}

/** Request counters. Each HTTP request is counted once it reached the handler, whatever its outcome. */
export interface SimulatorCallCounters {
  /** Requests to `/cgi-bin/token` (successes, errors and injected faults). */
  token: number;
  /** Requests to `/cgi-bin/stable_token` (all of them, forced or not). */
  stableToken: number;
  /** Requests to `/cgi-bin/stable_token` whose JSON body had `force_refresh: true`. */
  stableTokenForce: number;
  /** Force calls that actually issued a new stable token. */
  stableTokenForceRefreshes: number;
  /** Requests to `/cgi-bin/ticket/getticket`. */
  ticket: number;
  /** Requests to the business endpoint `/cgi-bin/get_api_domain_ip`. */
  business: number;
  /** Requests to `/cgi-bin/clear_quota/v2` (successful or not). */
  clearQuota: number;
  /** Requests to getApiQuota, `/cgi-bin/openapi/quota/get`. */
  quota: number;
  /** Token fetches by an outside party, see {@link WeChatSimulator.rotateExternally} (not HTTP, not in `total`). */
  external: number;
  /** Every HTTP request received, including unknown paths. */
  total: number;
}

/** Kind of access token. */
export type TokenKind = 'classic' | 'stable';

/** Ticket types served by `/cgi-bin/ticket/getticket`. */
export type TicketType = 'jsapi' | 'wx_card';

/**
 * State of a token or ticket at the simulator's `now()`: `invalidated` = killed by a rotation (WeChat
 * answers 40001), `expired` = past its natural expiry (42001), `unknown` = never issued by this simulator.
 */
export type CredentialStatus = 'valid' | 'invalidated' | 'expired' | 'unknown';

/** What the simulator knows about an access token it issued. */
export interface TokenInfo {
  /** App the token belongs to. */
  appid: string;
  /** Classic (`/cgi-bin/token`) or stable (`/cgi-bin/stable_token`). */
  kind: TokenKind;
  /** Issue time (epoch ms, simulator clock). */
  issuedAtMs: number;
  /** Natural expiry: issue time + `expires_in` at issue. */
  expiresAtMs: number;
  /** Kill time set by a later rotation, present only when earlier than the natural expiry. */
  invalidatedAtMs?: number;
  /** When the token stops working: `min(expiresAtMs, invalidatedAtMs)`. */
  deadAtMs: number;
}

/** A ticket issued by the simulator. */
export interface IssuedTicket {
  /** The ticket string. */
  ticket: string;
  /** Ticket type. */
  type: TicketType;
  /** Issue time (epoch ms, simulator clock). */
  issuedAtMs: number;
  /** Natural expiry (tickets are never invalidated early). */
  expiresAtMs: number;
  /** The access token used in the getticket call that created it. */
  accessToken: string;
}

/** Endpoint a fault applies to; `any` matches all four WeChat endpoints (never unknown paths). */
export type FaultEndpoint =
  | 'token'
  | 'stable_token'
  | 'ticket'
  | 'business'
  | 'clear_quota'
  | 'quota'
  | 'any';

/**
 * A queued fault. Faults are consumed in FIFO order by the first matching requests. Precedence when
 * several effects are combined: `latencyMs` (always applied first), then `reset`, `httpStatus`, `errcode`;
 * a fault with only `latencyMs` delays the normal answer.
 */
export interface SimulatorFault {
  /** Which endpoint the fault applies to. */
  endpoint: FaultEndpoint;
  /** How many matching requests it affects (default 1). */
  times?: number;
  /** Answer HTTP 200 `{"errcode":N,"errmsg":"<text> rid: <id>"}`. */
  errcode?: number;
  /** Text of the errmsg (a ` rid: ...` suffix is appended); default: WeChat's text for the errcode. */
  errmsg?: string;
  /** Answer this HTTP status with a short HTML body, like a gateway error. */
  httpStatus?: number;
  /** Destroy the socket without answering. */
  reset?: boolean;
  /** Delay the answer by this many real milliseconds. */
  latencyMs?: number;
  /** Only requests of this app match (token endpoints: the appid sent; ticket/business: the token's app). */
  appid?: string;
}

/** A running simulator. */
export interface WeChatSimulator {
  /** Base URL without trailing slash, e.g. `http://127.0.0.1:41234`. */
  readonly baseUrl: string;
  /** Live counters for all apps (the same object is updated in place). */
  readonly calls: SimulatorCallCounters;
  /** A snapshot of the counters of one app (all zero for an app never seen). */
  callsFor(appid: string): SimulatorCallCounters;
  /** Zeroes {@link WeChatSimulator.calls} (in place) and all per-app counters. */
  resetCounters(): void;
  /** Status of a classic or stable access token at the simulator's `now()`. */
  tokenStatus(token: string): CredentialStatus;
  /** Status of a ticket at the simulator's `now()` (never `invalidated`: tickets only expire). */
  ticketStatus(ticket: string): CredentialStatus;
  /** Details of an access token, or `undefined` if it was never issued here. */
  tokenInfo(token: string): TokenInfo | undefined;
  /** Every access token issued for `appid` (classic and stable, external rotations included), oldest first. */
  tokensIssued(appid: string): Array<TokenInfo & { token: string }>;
  /** Every ticket of that app and type issued so far, oldest first. */
  ticketsIssued(appid: string, type: TicketType): IssuedTicket[];
  /**
   * Acts like an outside party calling `/cgi-bin/token` once for `appid`: issues a new classic token with
   * the usual overlap rules and uses the app's quota. Counted in `calls.external`. Throws if the appid is
   * unknown or the classic quota is exhausted (the outside party would get 40013 / 45009).
   */
  rotateExternally(appid: string): string;
  /** Replaces the AppSecret of an app (tokens already issued stay valid). Throws for an unknown appid. */
  setSecret(appid: string, secret: string): void;
  /** `expires_in` of access tokens issued from now on (classic and stable). */
  setTokenLifetime(seconds: number): void;
  /** `expires_in` of tickets issued from now on (and of same-ticket re-fetch answers). */
  setTicketLifetime(seconds: number): void;
  /**
   * Clears the daily quota usage (including the force-refresh count) of one app, or of all apps, as
   * if a new quota day had begun: no monthly reset is used.
   */
  resetQuota(appid?: string): void;
  /**
   * What an operator does in the WeChat console: clears the app's daily quota usage and uses one of
   * its monthly resets (shared with clear_quota/v2). Throws when they are used up (WeChat: 48006).
   */
  clearQuotaAsOperator(appid: string): void;
  /** Quota resets the app has used this calendar month (UTC+8). */
  quotaResetsUsed(appid: string): number;
  /** Uses up the app's daily quota of one endpoint now: its next call there answers 45009. */
  exhaustQuota(appid: string, endpoint: 'token' | 'stable_token' | 'ticket'): void;
  /** Queues a fault. */
  inject(fault: SimulatorFault): void;
  /** Drops every queued fault. */
  clearFaults(): void;
  /** Stops the server, destroys open keep-alive sockets and pending delayed answers. */
  close(): Promise<void>;
}

const DAY_MS = 86_400_000;
const UTC8_OFFSET_MS = 8 * 3_600_000;
const MAX_BODY_BYTES = 1_048_576;

const DEFAULT_ERRMSG: Readonly<Record<number, string>> = {
  [-1]: 'system error',
  40001: 'invalid credential, access_token is invalid or not latest',
  40002: 'invalid grant_type',
  40013: 'invalid appid',
  40014: 'invalid access_token',
  40097: 'invalid args',
  40125: 'invalid appsecret',
  40243: 'AppSecret is frozen',
  41001: 'access_token missing',
  41002: 'appid missing',
  41004: 'appsecret missing',
  42001: 'access_token expired',
  43001: 'require GET method',
  43002: 'require POST method',
  45009: 'reach max api daily quota limit',
  45011: 'api minute-quota reach limit  mustslower  retry next minute',
  47001: 'data format error',
  48001: 'api unauthorized',
  48006: 'forbid to clear quota because of reaching the limit',
  50002: 'user limited',
  61004: 'access clientip is not registered',
  89501: 'this IP is awaiting admin confirmation',
  89503: 'risky call, admin confirmation required',
  89506: 'IP rejected by admin twice within 24 hours, blocked for 24 hours',
  89507: 'IP rejected by admin, blocked for 1 hour',
};

const HTTP_REASON: Readonly<Record<number, string>> = {
  400: 'Bad Request',
  403: 'Forbidden',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  502: 'Bad Gateway',
  503: 'Service Temporarily Unavailable',
  504: 'Gateway Time-out',
};

type Endpoint = Exclude<FaultEndpoint, 'any'>;

const PATHS: Readonly<Record<string, Endpoint>> = {
  '/cgi-bin/token': 'token',
  '/cgi-bin/stable_token': 'stable_token',
  '/cgi-bin/ticket/getticket': 'ticket',
  '/cgi-bin/get_api_domain_ip': 'business',
  '/cgi-bin/clear_quota/v2': 'clear_quota',
  '/cgi-bin/openapi/quota/get': 'quota',
};

interface TokenRecord {
  token: string;
  appid: string;
  kind: TokenKind;
  issuedAtMs: number;
  expiresAtMs: number;
  invalidatedAtMs?: number;
}

interface TicketRecord {
  ticket: string;
  appid: string;
  type: TicketType;
  issuedAtMs: number;
  expiresAtMs: number;
  accessToken: string;
}

interface QuotaUsage {
  day: number;
  classic: number;
  stable: number;
  ticket: number;
  stableForceRefreshes: number;
}

interface AppState {
  appid: string;
  secret: string;
  classicCurrent?: TokenRecord;
  classicPrevious?: TokenRecord;
  stableCurrent?: TokenRecord;
  stablePrevious?: TokenRecord;
  lastStableForceRefreshMs?: number;
  currentTickets: Map<TicketType, TicketRecord>;
  ticketHistory: Map<TicketType, TicketRecord[]>;
  quota: QuotaUsage;
  /** Quota resets used in one calendar month (UTC+8). */
  resets: { month: string; used: number };
}

interface QueuedFault {
  fault: SimulatorFault;
  remaining: number;
}

interface Reply {
  status: number;
  contentType: string;
  body: string;
}

type JsonObject = Record<string, unknown>;

function zeroCounters(): SimulatorCallCounters {
  return {
    token: 0,
    stableToken: 0,
    stableTokenForce: 0,
    stableTokenForceRefreshes: 0,
    ticket: 0,
    business: 0,
    clearQuota: 0,
    quota: 0,
    external: 0,
    total: 0,
  };
}

function randomString(bytes: number): string {
  return randomBytes(bytes).toString('base64url');
}

function quotaDay(nowMs: number): number {
  return Math.floor((nowMs + UTC8_OFFSET_MS) / DAY_MS);
}

/** The calendar month in UTC+8, `YYYY-MM`. */
function quotaMonth(nowMs: number): string {
  return new Date(nowMs + UTC8_OFFSET_MS).toISOString().slice(0, 7);
}

function statusAt(rec: TokenRecord, nowMs: number): Exclude<CredentialStatus, 'unknown'> {
  if (rec.invalidatedAtMs !== undefined && nowMs >= rec.invalidatedAtMs) return 'invalidated';
  if (nowMs >= rec.expiresAtMs) return 'expired';
  return 'valid';
}

function nonEmptyString(value: unknown): string | undefined {
  return typeof value === 'string' && value !== '' ? value : undefined;
}

function isPlainObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function positiveInteger(name: string, value: number): number {
  if (!Number.isInteger(value) || value <= 0)
    throw new RangeError(`${name} must be a positive integer, got ${value}`);
  return value;
}

function nonNegativeNumber(name: string, value: number): number {
  if (!Number.isFinite(value) || value < 0) throw new RangeError(`${name} must be >= 0, got ${value}`);
  return value;
}

class Simulator implements WeChatSimulator {
  baseUrl = '';
  readonly calls: SimulatorCallCounters = zeroCounters();

  private readonly now: () => number;
  private tokenLifetimeSeconds: number;
  private ticketLifetimeSeconds: number;
  private readonly overlapMs: number;
  private readonly classicDailyQuota: number;
  private readonly stableDailyQuota: number;
  private readonly ticketDailyQuota: number;
  private readonly stableForceDailyLimit: number;
  private readonly stableForceMinIntervalMs: number;
  private readonly quotaResetsPerMonth: number;
  private readonly egressIp: string;

  private readonly apps = new Map<string, AppState>();
  private readonly tokens = new Map<string, TokenRecord>();
  private readonly tickets = new Map<string, TicketRecord>();
  private readonly perApp = new Map<string, SimulatorCallCounters>();
  private faults: QueuedFault[] = [];
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly server = createServer((req, res) => this.onRequest(req, res));
  private closed = false;

  constructor(options: SimulatorOptions) {
    this.now = options.now ?? Date.now;
    this.tokenLifetimeSeconds = positiveInteger('tokenLifetimeSeconds', options.tokenLifetimeSeconds ?? 7200);
    this.ticketLifetimeSeconds = positiveInteger(
      'ticketLifetimeSeconds',
      options.ticketLifetimeSeconds ?? 7200,
    );
    this.overlapMs = nonNegativeNumber('overlapSeconds', options.overlapSeconds ?? 300) * 1000;
    this.classicDailyQuota = nonNegativeNumber('classicDailyQuota', options.classicDailyQuota ?? 2000);
    this.stableDailyQuota = nonNegativeNumber('stableDailyQuota', options.stableDailyQuota ?? 500_000);
    this.ticketDailyQuota = nonNegativeNumber('ticketDailyQuota', options.ticketDailyQuota ?? 100_000);
    this.stableForceDailyLimit = nonNegativeNumber(
      'stableForceDailyLimit',
      options.stableForceDailyLimit ?? 20,
    );
    this.stableForceMinIntervalMs =
      nonNegativeNumber('stableForceMinIntervalSeconds', options.stableForceMinIntervalSeconds ?? 30) * 1000;
    this.quotaResetsPerMonth = nonNegativeNumber('quotaResetsPerMonth', options.quotaResetsPerMonth ?? 10);
    this.egressIp = options.egressIp ?? '203.0.113.7';
    for (const app of options.apps) {
      if (this.apps.has(app.appid)) throw new Error(`duplicate appid ${app.appid}`);
      this.apps.set(app.appid, {
        appid: app.appid,
        secret: app.secret,
        currentTickets: new Map(),
        ticketHistory: new Map(),
        quota: { day: quotaDay(this.now()), classic: 0, stable: 0, ticket: 0, stableForceRefreshes: 0 },
        resets: { month: quotaMonth(this.now()), used: 0 },
      });
    }
    this.server.on('clientError', (_err: Error, socket: Socket) => socket.destroy());
  }

  async listen(host: string): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(0, host, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    const address = this.server.address() as AddressInfo;
    const hostPart = address.family === 'IPv6' ? `[${address.address}]` : address.address;
    this.baseUrl = `http://${hostPart}:${address.port}`;
  }

  // ---- public API -------------------------------------------------------------------------------

  callsFor(appid: string): SimulatorCallCounters {
    const counters = this.perApp.get(appid);
    return counters ? { ...counters } : zeroCounters();
  }

  resetCounters(): void {
    Object.assign(this.calls, zeroCounters());
    this.perApp.clear();
  }

  tokenStatus(token: string): CredentialStatus {
    const rec = this.tokens.get(token);
    return rec ? statusAt(rec, this.now()) : 'unknown';
  }

  ticketStatus(ticket: string): CredentialStatus {
    const rec = this.tickets.get(ticket);
    if (!rec) return 'unknown';
    return this.now() >= rec.expiresAtMs ? 'expired' : 'valid';
  }

  tokenInfo(token: string): TokenInfo | undefined {
    const rec = this.tokens.get(token);
    if (!rec) return undefined;
    const info: TokenInfo = {
      appid: rec.appid,
      kind: rec.kind,
      issuedAtMs: rec.issuedAtMs,
      expiresAtMs: rec.expiresAtMs,
      deadAtMs: Math.min(rec.expiresAtMs, rec.invalidatedAtMs ?? Number.POSITIVE_INFINITY),
    };
    if (rec.invalidatedAtMs !== undefined) info.invalidatedAtMs = rec.invalidatedAtMs;
    return info;
  }

  tokensIssued(appid: string): Array<TokenInfo & { token: string }> {
    const issued: Array<TokenInfo & { token: string }> = [];
    for (const [token, rec] of this.tokens) {
      if (rec.appid !== appid) continue;
      const info = this.tokenInfo(token);
      if (info) issued.push({ token, ...info });
    }
    return issued;
  }

  ticketsIssued(appid: string, type: TicketType): IssuedTicket[] {
    const history = this.apps.get(appid)?.ticketHistory.get(type) ?? [];
    return history.map((t) => ({
      ticket: t.ticket,
      type: t.type,
      issuedAtMs: t.issuedAtMs,
      expiresAtMs: t.expiresAtMs,
      accessToken: t.accessToken,
    }));
  }

  rotateExternally(appid: string): string {
    const app = this.apps.get(appid);
    if (!app) throw new Error(`rotateExternally: unknown appid ${appid} (WeChat would answer 40013)`);
    this.calls.external++;
    this.countersOf(appid).external++;
    const quota = this.quotaOf(app);
    if (quota.classic >= this.classicDailyQuota) {
      throw new Error(`rotateExternally: classic quota of ${appid} exhausted (WeChat would answer 45009)`);
    }
    quota.classic++;
    return this.issueClassic(app).token;
  }

  setSecret(appid: string, secret: string): void {
    const app = this.apps.get(appid);
    if (!app) throw new Error(`setSecret: unknown appid ${appid}`);
    app.secret = secret;
  }

  setTokenLifetime(seconds: number): void {
    this.tokenLifetimeSeconds = positiveInteger('tokenLifetimeSeconds', seconds);
  }

  setTicketLifetime(seconds: number): void {
    this.ticketLifetimeSeconds = positiveInteger('ticketLifetimeSeconds', seconds);
  }

  resetQuota(appid?: string): void {
    const day = quotaDay(this.now());
    const fresh = (): QuotaUsage => ({ day, classic: 0, stable: 0, ticket: 0, stableForceRefreshes: 0 });
    if (appid === undefined) {
      for (const app of this.apps.values()) app.quota = fresh();
      return;
    }
    const app = this.apps.get(appid);
    if (app) app.quota = fresh();
  }

  clearQuotaAsOperator(appid: string): void {
    const app = this.apps.get(appid);
    if (!app) throw new Error(`clearQuotaAsOperator: unknown appid ${appid}`);
    if (!this.useReset(app)) {
      throw new Error(
        `clearQuotaAsOperator: the month's quota resets of ${appid} are used up (WeChat: 48006)`,
      );
    }
  }

  quotaResetsUsed(appid: string): number {
    const app = this.apps.get(appid);
    return app ? this.resetsOf(app).used : 0;
  }

  exhaustQuota(appid: string, endpoint: 'token' | 'stable_token' | 'ticket'): void {
    const app = this.apps.get(appid);
    if (!app) throw new Error(`exhaustQuota: unknown appid ${appid}`);
    const quota = this.quotaOf(app);
    if (endpoint === 'token') quota.classic = this.classicDailyQuota;
    else if (endpoint === 'stable_token') quota.stable = this.stableDailyQuota;
    else quota.ticket = this.ticketDailyQuota;
  }

  inject(fault: SimulatorFault): void {
    const times = fault.times ?? 1;
    if (!Number.isInteger(times) || times < 1) throw new RangeError(`fault.times must be a positive integer`);
    if (fault.latencyMs !== undefined) nonNegativeNumber('fault.latencyMs', fault.latencyMs);
    this.faults.push({ fault: { ...fault }, remaining: times });
  }

  clearFaults(): void {
    this.faults = [];
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  // ---- HTTP plumbing ----------------------------------------------------------------------------

  private onRequest(req: IncomingMessage, res: ServerResponse): void {
    this.handle(req, res).catch(() => {
      if (res.headersSent || res.destroyed) {
        res.destroy();
        return;
      }
      try {
        this.send(res, this.error(-1));
      } catch {
        res.destroy();
      }
    });
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const rawBody = (await readBody(req, MAX_BODY_BYTES)).toString('utf8');
    this.calls.total++;
    const url = new URL(req.url ?? '/', 'http://localhost');
    const endpoint = PATHS[url.pathname];
    if (endpoint === undefined) {
      this.send(res, this.json(404, { errcode: -1, errmsg: this.withRid(`no such api ${url.pathname}`) }));
      return;
    }

    let stableBody: JsonObject | undefined;
    if (endpoint === 'stable_token' || (endpoint === 'clear_quota' && rawBody.trim() !== '')) {
      try {
        const parsed: unknown = JSON.parse(rawBody);
        if (isPlainObject(parsed)) stableBody = parsed;
      } catch {
        stableBody = undefined;
      }
    }
    const appid = this.attribute(endpoint, url.searchParams, stableBody);
    this.count(endpoint, appid, stableBody?.force_refresh === true);

    const fault = this.takeFault(endpoint, appid);
    if (fault?.latencyMs !== undefined && fault.latencyMs > 0) {
      await this.delay(fault.latencyMs);
    }
    if (this.closed) return;
    if (fault?.reset === true) {
      req.socket.destroy();
      return;
    }
    if (fault?.httpStatus !== undefined) {
      this.send(res, this.gatewayError(fault.httpStatus));
      return;
    }
    if (fault?.errcode !== undefined) {
      this.send(res, this.error(fault.errcode, fault.errmsg));
      return;
    }

    const method = req.method ?? 'GET';
    switch (endpoint) {
      case 'token':
        this.send(res, this.classicToken(method, url.searchParams));
        return;
      case 'stable_token':
        this.send(res, this.stableToken(method, stableBody));
        return;
      case 'ticket':
        this.send(res, this.getTicket(method, url.searchParams));
        return;
      case 'business':
        this.send(res, this.business(method, url.searchParams));
        return;
      case 'clear_quota':
        this.send(res, this.clearQuota(method, url.searchParams, stableBody));
        return;
      case 'quota':
        this.send(res, quotaGet(this.quotaHost, method, url.searchParams, rawBody));
        return;
    }
  }

  private send(res: ServerResponse, reply: Reply): void {
    if (res.destroyed) return;
    res.writeHead(reply.status, {
      'Content-Type': reply.contentType,
      'Content-Length': Buffer.byteLength(reply.body),
    });
    res.end(reply.body);
  }

  private delay(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.timers.delete(timer);
        resolve();
      }, ms);
      this.timers.add(timer);
    });
  }

  private attribute(
    endpoint: Endpoint,
    params: URLSearchParams,
    stableBody: JsonObject | undefined,
  ): string | undefined {
    switch (endpoint) {
      case 'token':
        return nonEmptyString(params.get('appid'));
      case 'stable_token':
        return nonEmptyString(stableBody?.appid);
      case 'clear_quota':
        return nonEmptyString(params.get('appid')) ?? nonEmptyString(stableBody?.appid);
      case 'ticket':
      case 'quota':
      case 'business': {
        const token = params.get('access_token');
        return token ? this.tokens.get(token)?.appid : undefined;
      }
    }
  }

  private countersOf(appid: string): SimulatorCallCounters {
    let counters = this.perApp.get(appid);
    if (!counters) {
      counters = zeroCounters();
      this.perApp.set(appid, counters);
    }
    return counters;
  }

  private count(endpoint: Endpoint, appid: string | undefined, force: boolean): void {
    const targets = appid === undefined ? [this.calls] : [this.calls, this.countersOf(appid)];
    for (const c of targets) {
      if (c !== this.calls) c.total++;
      switch (endpoint) {
        case 'token':
          c.token++;
          break;
        case 'stable_token':
          c.stableToken++;
          if (force) c.stableTokenForce++;
          break;
        case 'ticket':
          c.ticket++;
          break;
        case 'business':
          c.business++;
          break;
        case 'clear_quota':
          c.clearQuota++;
          break;
        case 'quota':
          c.quota++;
          break;
      }
    }
  }

  private takeFault(endpoint: Endpoint, appid: string | undefined): SimulatorFault | undefined {
    const index = this.faults.findIndex(
      (q) =>
        (q.fault.endpoint === 'any' || q.fault.endpoint === endpoint) &&
        (q.fault.appid === undefined || q.fault.appid === appid),
    );
    if (index < 0) return undefined;
    const queued = this.faults[index];
    if (!queued) return undefined;
    queued.remaining--;
    if (queued.remaining <= 0) this.faults.splice(index, 1);
    return queued.fault;
  }

  // ---- replies ----------------------------------------------------------------------------------

  private rid(): string {
    const seconds = Math.max(0, Math.floor(this.now() / 1000));
    return `${seconds.toString(16).padStart(8, '0')}-${randomBytes(4).toString('hex')}-${randomBytes(4).toString('hex')}`;
  }

  private withRid(text: string): string {
    return `${text} rid: ${this.rid()}`;
  }

  private json(status: number, body: JsonObject): Reply {
    return { status, contentType: 'application/json; encoding=utf-8', body: JSON.stringify(body) };
  }

  private error(errcode: number, errmsg?: string): Reply {
    const text =
      errmsg ??
      (errcode === 40164
        ? `invalid ip ${this.egressIp} ipv6 ::ffff:${this.egressIp}, not in whitelist`
        : (DEFAULT_ERRMSG[errcode] ?? 'error'));
    return this.json(200, { errcode, errmsg: this.withRid(text) });
  }

  private gatewayError(status: number): Reply {
    const title = `${status} ${HTTP_REASON[status] ?? 'Error'}`;
    return {
      status,
      contentType: 'text/html',
      body: `<html>\r\n<head><title>${title}</title></head>\r\n<body>\r\n<center><h1>${title}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n`,
    };
  }

  // ---- domain logic -----------------------------------------------------------------------------

  private quotaOf(app: AppState): QuotaUsage {
    const day = quotaDay(this.now());
    if (app.quota.day !== day) {
      app.quota = { day, classic: 0, stable: 0, ticket: 0, stableForceRefreshes: 0 };
    }
    return app.quota;
  }

  /** Validates grant_type/appid/secret in WeChat's order; returns the app or an error reply. */
  private authenticate(grantType: unknown, appidValue: unknown, secretValue: unknown): AppState | Reply {
    if (grantType !== 'client_credential') return this.error(40002);
    const appid = nonEmptyString(appidValue);
    if (appid === undefined) return this.error(41002);
    const secret = nonEmptyString(secretValue);
    if (secret === undefined) return this.error(41004);
    const app = this.apps.get(appid);
    if (!app) return this.error(40013);
    if (app.secret !== secret) return this.error(40001);
    return app;
  }

  private newToken(app: AppState, kind: TokenKind): TokenRecord {
    const now = this.now();
    const rec: TokenRecord = {
      token: `86_${kind === 'classic' ? 'C' : 'S'}${randomString(96)}`,
      appid: app.appid,
      kind,
      issuedAtMs: now,
      expiresAtMs: now + this.tokenLifetimeSeconds * 1000,
    };
    this.tokens.set(rec.token, rec);
    return rec;
  }

  /** Makes `rec` die at `atMs` unless it already dies (naturally or by an earlier kill) no later than that. */
  private killAt(rec: TokenRecord | undefined, atMs: number): void {
    if (!rec) return;
    if (atMs >= rec.expiresAtMs) return;
    if (rec.invalidatedAtMs !== undefined && rec.invalidatedAtMs <= atMs) return;
    rec.invalidatedAtMs = atMs;
  }

  private issueClassic(app: AppState): TokenRecord {
    const now = this.now();
    const fresh = this.newToken(app, 'classic');
    this.killAt(app.classicPrevious, now);
    this.killAt(app.classicCurrent, now + this.overlapMs);
    app.classicPrevious = app.classicCurrent;
    app.classicCurrent = fresh;
    return fresh;
  }

  private issueStable(app: AppState, forced: boolean): TokenRecord {
    const now = this.now();
    const fresh = this.newToken(app, 'stable');
    this.killAt(app.stablePrevious, now);
    if (forced) this.killAt(app.stableCurrent, now + this.overlapMs);
    app.stablePrevious = app.stableCurrent;
    app.stableCurrent = fresh;
    return fresh;
  }

  private tokenReply(rec: TokenRecord, expiresIn: number): Reply {
    return this.json(200, { access_token: rec.token, expires_in: expiresIn });
  }

  private classicToken(method: string, params: URLSearchParams): Reply {
    if (method !== 'GET') return this.error(43001);
    const auth = this.authenticate(params.get('grant_type'), params.get('appid'), params.get('secret'));
    if (!('appid' in auth)) return auth;
    const quota = this.quotaOf(auth);
    if (quota.classic >= this.classicDailyQuota) return this.error(45009);
    quota.classic++;
    return this.tokenReply(this.issueClassic(auth), this.tokenLifetimeSeconds);
  }

  private stableToken(method: string, body: JsonObject | undefined): Reply {
    if (method !== 'POST') return this.error(43002);
    if (body === undefined) return this.error(47001);
    const auth = this.authenticate(body.grant_type, body.appid, body.secret);
    if (!('appid' in auth)) return auth;
    const app = auth;
    const quota = this.quotaOf(app);
    if (quota.stable >= this.stableDailyQuota) return this.error(45009);
    const now = this.now();

    if (body.force_refresh === true) {
      const last = app.lastStableForceRefreshMs;
      if (last === undefined || now - last >= this.stableForceMinIntervalMs) {
        if (quota.stableForceRefreshes >= this.stableForceDailyLimit) return this.error(45009);
        quota.stableForceRefreshes++;
        quota.stable++;
        app.lastStableForceRefreshMs = now;
        this.calls.stableTokenForceRefreshes++;
        this.countersOf(app.appid).stableTokenForceRefreshes++;
        return this.tokenReply(this.issueStable(app, true), this.tokenLifetimeSeconds);
      }
      // Too soon after the last force refresh: no refresh happens, answer like normal mode.
    }

    quota.stable++;
    const current = app.stableCurrent;
    if (current && statusAt(current, now) === 'valid' && current.expiresAtMs - now > this.overlapMs) {
      return this.tokenReply(current, Math.floor((current.expiresAtMs - now) / 1000));
    }
    return this.tokenReply(this.issueStable(app, false), this.tokenLifetimeSeconds);
  }

  /** Checks the access_token of a token-consuming API; returns its record or an error reply. */
  private checkAccessToken(params: URLSearchParams): TokenRecord | Reply {
    const token = params.get('access_token');
    if (!token) return this.error(41001);
    const rec = this.tokens.get(token);
    if (!rec) return this.error(40001);
    const status = statusAt(rec, this.now());
    if (status === 'invalidated') return this.error(40001);
    if (status === 'expired') return this.error(42001);
    return rec;
  }

  private getTicket(method: string, params: URLSearchParams): Reply {
    if (method !== 'GET') return this.error(43001);
    const checked = this.checkAccessToken(params);
    if (!('token' in checked)) return checked;
    const type = params.get('type');
    if (type !== 'jsapi' && type !== 'wx_card') return this.error(40097);
    const app = this.apps.get(checked.appid);
    if (!app) return this.error(40001);
    const quota = this.quotaOf(app);
    if (quota.ticket >= this.ticketDailyQuota) return this.error(45009);
    quota.ticket++;

    const now = this.now();
    let ticket = app.currentTickets.get(type);
    if (!ticket || now >= ticket.expiresAtMs) {
      ticket = {
        ticket: `T${randomString(64)}`,
        appid: app.appid,
        type,
        issuedAtMs: now,
        expiresAtMs: now + this.ticketLifetimeSeconds * 1000,
        accessToken: checked.token,
      };
      app.currentTickets.set(type, ticket);
      this.tickets.set(ticket.ticket, ticket);
      let history = app.ticketHistory.get(type);
      if (!history) {
        history = [];
        app.ticketHistory.set(type, history);
      }
      history.push(ticket);
    }
    return this.json(200, {
      errcode: 0,
      errmsg: 'ok',
      ticket: ticket.ticket,
      expires_in: this.ticketLifetimeSeconds,
    });
  }

  private resetsOf(app: AppState): { month: string; used: number } {
    const month = quotaMonth(this.now());
    if (app.resets.month !== month) app.resets = { month, used: 0 };
    return app.resets;
  }

  /** Uses one of the month's resets and clears the day's usage; false when they are used up. */
  private useReset(app: AppState): boolean {
    const resets = this.resetsOf(app);
    if (resets.used >= this.quotaResetsPerMonth) return false;
    resets.used++;
    app.quota = { day: quotaDay(this.now()), classic: 0, stable: 0, ticket: 0, stableForceRefreshes: 0 };
    return true;
  }

  /**
   * `POST /cgi-bin/clear_quota/v2`. WeChat's pages name appid and appsecret both as URL and as JSON body
   * parameters: either is accepted. A wrong secret answers 40001, as the token endpoint does (the page
   * lists no errcode for it).
   */
  private clearQuota(method: string, params: URLSearchParams, body: JsonObject | undefined): Reply {
    if (method !== 'POST') return this.error(43002);
    const appid = nonEmptyString(params.get('appid')) ?? nonEmptyString(body?.appid);
    if (appid === undefined) return this.error(41002);
    const secret = nonEmptyString(params.get('appsecret')) ?? nonEmptyString(body?.appsecret);
    if (secret === undefined) return this.error(41004);
    const app = this.apps.get(appid);
    if (!app) return this.error(40013);
    if (app.secret !== secret) return this.error(40001);
    if (!this.useReset(app)) return this.error(48006);
    return this.json(200, { errcode: 0, errmsg: 'ok' });
  }

  /** What getApiQuota (wechat-quota-api.ts) needs: the token check, the day's usage, replies. */
  private readonly quotaHost: QuotaApiHost<Reply> = {
    checkAccessToken: (params) => {
      const checked = this.checkAccessToken(params);
      return 'token' in checked ? { appid: checked.appid } : checked;
    },
    usage: (appid, cgiPath) => {
      const app = this.apps.get(appid);
      if (!app) return null;
      const quota = this.quotaOf(app);
      if (cgiPath === '/cgi-bin/token') return { used: quota.classic, limit: this.classicDailyQuota };
      if (cgiPath === '/cgi-bin/stable_token') return { used: quota.stable, limit: this.stableDailyQuota };
      if (cgiPath === '/cgi-bin/ticket/getticket')
        return { used: quota.ticket, limit: this.ticketDailyQuota };
      return null;
    },
    error: (errcode, errmsg) => this.error(errcode, errmsg),
    ok: (body) => this.json(200, body),
  };

  private business(method: string, params: URLSearchParams): Reply {
    if (method !== 'GET') return this.error(43001);
    const checked = this.checkAccessToken(params);
    if (!('token' in checked)) return checked;
    return this.json(200, { ip_list: ['101.226.103.0/25', '101.226.233.128/25'] });
  }
}

/**
 * Starts a simulator on `options.host` (default `127.0.0.1`) and a random port.
 *
 * @param options - apps, clock, lifetimes and limits.
 * @returns the running simulator; call {@link WeChatSimulator.close} when done.
 */
export async function startWeChatSimulator(options: SimulatorOptions): Promise<WeChatSimulator> {
  const simulator = new Simulator(options);
  await simulator.listen(options.host ?? '127.0.0.1');
  return simulator;
}
