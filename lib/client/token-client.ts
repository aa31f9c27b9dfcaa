/**
 * What a consumer process uses to get an appid's access token from the service — and what makes the
 * service's promise pay off:
 *
 * - **One cache per process.** A token is kept until its `expires_at` less a skew of
 *   min(2 s, 10 % of `expires_in`), measured on this process's clock from when the request was sent
 *   (so neither a slow answer nor a clock ahead of the service's stretches it). A token is never
 *   handed out after its `expires_at`; one promised for 0 s is handed to the callers that asked for it
 *   and not kept.
 * - **Single flight.** Callers that find the cache empty share one service call (and a report in
 *   flight: see below).
 * - **Report, then retry once.** When WeChat answers a business call with 40001, 40014 or 42001,
 *   {@link TokenClient.withToken} reports the token it used (`refresh_token`) and calls once more with
 *   the token the service answers. Reports of one token are coalesced, and a report of a token this
 *   process already replaced costs nothing: each process reports a dead token once.
 * - **Typed errors, bounded retries.** The service's `{error}` becomes a {@link TokenClientError} with
 *   its `code`, `retryable` and `errcode`; retryable failures are retried with jittered exponential
 *   backoff until the call's deadline (default 10 s), never past it.
 *
 * Create one client per appid per process (at module scope, not per request): its cache is the
 * per-process cache.
 */
import { type ClientClock, Deadline, sleep, systemClientClock, within } from './clock.ts';
import { TokenClientError } from './errors.ts';
import type { CallOptions, GetTokenOptions, TokenClientOptions, WithTokenOptions } from './options.ts';
import {
  type AgentConfigBody,
  isOpaqueValue,
  type JssdkConfigBody,
  parseAgentConfigBody,
  parseJssdkConfigBody,
  parseTicketBody,
  parseTokenBody,
  type ServiceRequest,
  type TicketType,
} from './protocol.ts';
import type { TokenTransport } from './transport.ts';
import { isInvalidTokenErrcode, wechatErrcode } from './wechat-errcode.ts';

export type { CallOptions, GetTokenOptions, TokenClientOptions, WithTokenOptions } from './options.ts';

/** A token or ticket as this process holds it. */
interface Held {
  value: string;
  /** Epoch ms: handed out only before this (`expires_at` less the skew). */
  usableUntilMs: number;
}

/** A service call that callers share. */
interface Flight {
  promise: Promise<string>;
  deadline: Deadline;
}

/**
 * A WeChat appid or a WeCom app `corpid:agentid` (the service's APPID_PATTERN in lib/domain.ts; a
 * unit test keeps them equal).
 */
export const APPID_PATTERN: RegExp = /^(?:wx[0-9a-f]{16}|w[wx][0-9a-f]{16}:[1-9][0-9]{0,9})$/;
const DEFAULT_DEADLINE_MS = 10_000;
const MAX_DEADLINE_MS = 15 * 60_000;
const MAX_SKEW_MS = 2_000;
const BACKOFF_BASE_MS = 100;
const BACKOFF_CAP_MS = 2_000;
/** How many reported tokens a client remembers, so that it never caches one of them again. */
const DEAD_TOKENS_KEPT = 16;

/** A typed client of the token service for one appid. */
export class TokenClient {
  /** The appid this client serves. */
  readonly appid: string;
  private readonly transport: TokenTransport;
  private readonly clock: ClientClock;
  private readonly defaultDeadlineMs: number;

  private token: Held | undefined;
  private tokenFlight: Flight | undefined;
  private readonly reports = new Map<string, Flight>();
  private readonly deadTokens: string[] = [];
  private readonly tickets = new Map<TicketType, Held>();
  private readonly ticketFlights = new Map<TicketType, Flight>();

  /** Throws `invalid_argument` for an appid that is not a WeChat appid, or a bad deadline. */
  constructor(options: TokenClientOptions) {
    if (typeof options?.appid !== 'string' || !APPID_PATTERN.test(options.appid)) {
      throw new TokenClientError(
        'invalid_argument',
        'TokenClient: appid must be a WeChat appid ("wx" followed by 16 lower-case hex digits) or a WeCom app ("corpid:agentid")',
      );
    }
    if (typeof options.transport?.send !== 'function') {
      throw new TokenClientError(
        'invalid_argument',
        'TokenClient: transport must be invokeTransport(…) or httpTransport(…)',
      );
    }
    this.appid = options.appid;
    this.transport = options.transport;
    this.clock = options.clock ?? systemClientClock;
    this.defaultDeadlineMs = checkDeadline(options.deadlineMs ?? DEFAULT_DEADLINE_MS);
  }

  /**
   * The access token: from this process's cache while valid, otherwise from the service (one call
   * for all concurrent callers). Rejects with a {@link TokenClientError}: the service's code, or
   * `service_unreachable`, `service_refused`, `service_bad_response`, `deadline_exceeded`.
   */
  async getToken(options: GetTokenOptions = {}): Promise<string> {
    const held = this.token;
    if (held !== undefined && options.forceFetch !== true && this.clock.now() < held.usableUntilMs) {
      return held.value;
    }
    const deadlineAtMs = this.deadlineAt(options);
    let flight = this.tokenFlight;
    if (flight === undefined || options.forceFetch === true) {
      flight = this.startFlight(deadlineAtMs, (deadline) =>
        this.fetchToken({ action: 'get_token', appid: this.appid }, deadline),
      );
      const started = flight;
      this.tokenFlight = started;
      void started.promise.then(
        () => this.endTokenFlight(started),
        () => this.endTokenFlight(started),
      );
    }
    return this.join(flight, deadlineAtMs, 'get_token');
  }

  /**
   * Reports `token` as rejected by WeChat (40001, 40014, 42001) and answers the token to use now.
   * If this process already holds a newer token, that one, at no cost; concurrent reports of one
   * token share one service call. The service refreshes only if `token` is still its current one
   * and old enough, and otherwise answers its current token — possibly `token` itself, which is then
   * handed out but never cached again. Rejects like {@link TokenClient.getToken}, and with
   * `invalid_argument` when `token` is not a token.
   */
  async reportInvalid(token: string, options: CallOptions = {}): Promise<string> {
    if (!isOpaqueValue(token)) {
      throw new TokenClientError(
        'invalid_argument',
        'reportInvalid: token must be the access token WeChat rejected (1 to 2048 printable characters)',
      );
    }
    const held = this.token;
    if (held !== undefined && held.value !== token && this.clock.now() < held.usableUntilMs) {
      return held.value;
    }
    if (held?.value === token) this.token = undefined;
    this.markDead(token);
    const deadlineAtMs = this.deadlineAt(options);
    let flight = this.reports.get(token);
    if (flight === undefined) {
      const started = this.startFlight(deadlineAtMs, (deadline) =>
        this.fetchToken({ action: 'refresh_token', appid: this.appid, invalid_token: token }, deadline),
      );
      flight = started;
      this.reports.set(token, started);
      // Callers that find the cache empty meanwhile wait for the report instead of asking again.
      this.tokenFlight = started;
      const end = () => {
        this.reports.delete(token);
        this.endTokenFlight(started);
      };
      void started.promise.then(end, end);
    }
    return this.join(flight, deadlineAtMs, 'refresh_token');
  }

  /**
   * Calls `fn` with the access token. When `fn`'s result — or what it throws — carries WeChat's errcode
   * 40001, 40014 or 42001, reports that token and calls `fn` once more with the token the service
   * answers; that second outcome is returned (or thrown) as it is. `deadlineMs` bounds the token
   * calls, measured from the start; `fn` itself is never interrupted. Rejects with a
   * {@link TokenClientError} when no token can be had, and otherwise with whatever `fn` throws.
   */
  async withToken<T>(
    fn: (accessToken: string) => T | Promise<T>,
    options: WithTokenOptions = {},
  ): Promise<T> {
    const held = this.token;
    const token =
      held !== undefined && this.clock.now() < held.usableUntilMs ? held.value : await this.getToken(options);
    const errcodeOf = options.errcodeOf ?? wechatErrcode;
    let result: T;
    try {
      result = await fn(token);
    } catch (err) {
      if (!isInvalidTokenErrcode(errcodeOf(err))) throw err;
      return fn(await this.reportInvalid(token, options));
    }
    if (!isInvalidTokenErrcode(errcodeOf(result))) return result;
    return fn(await this.reportInvalid(token, options));
  }

  /**
   * How much longer, in milliseconds, this client will hand out `token` from its cache: 0 when it does
   * not hold that token (any more). SDK adapters use it for the expiry fields their SDKs expect.
   */
  validForMs(token: string): number {
    const held = this.token;
    if (held === undefined || held.value !== token) return 0;
    return Math.max(0, held.usableUntilMs - this.clock.now());
  }

  /**
   * A JS-SDK (`jsapi`) or card (`wx_card`) ticket, cached and shared like the token. Prefer
   * {@link TokenClient.jssdkConfig}, which keeps the ticket inside the service.
   */
  async getTicket(type: TicketType, options: CallOptions = {}): Promise<string> {
    const types = this.appid.includes(':') ? ['jsapi', 'agent_config'] : ['jsapi', 'wx_card'];
    if (!types.includes(type)) {
      throw new TokenClientError('invalid_argument', `getTicket: type must be "${types.join('" or "')}"`);
    }
    const held = this.tickets.get(type);
    if (held !== undefined && this.clock.now() < held.usableUntilMs) return held.value;
    const deadlineAtMs = this.deadlineAt(options);
    let flight = this.ticketFlights.get(type);
    if (flight === undefined) {
      const request: ServiceRequest = { action: 'get_ticket', appid: this.appid, type };
      const started = this.startFlight(deadlineAtMs, async (deadline) => {
        const { body, sentAtMs } = await this.call(request, deadline, parseTicketBody);
        const held = this.holding(body.ticket, body.expires_in, body.expires_at, sentAtMs);
        if (held !== undefined) this.tickets.set(type, held);
        return body.ticket;
      });
      flight = started;
      this.ticketFlights.set(type, started);
      const end = () => {
        if (this.ticketFlights.get(type) === started) this.ticketFlights.delete(type);
      };
      void started.promise.then(end, end);
    }
    return this.join(flight, deadlineAtMs, 'get_ticket');
  }

  /**
   * A signed `wx.config` for the page at `url` (absolute http(s), the `#fragment` is ignored by the
   * service), signed by the service with its own jsapi ticket. Never cached: each call is a new
   * nonce. Rejects with `invalid_argument` for a URL the service would refuse.
   */
  async jssdkConfig(url: string, options: CallOptions = {}): Promise<JssdkConfigBody> {
    return this.signed({ action: 'jssdk_config', appid: this.appid, url }, options, parseJssdkConfigBody);
  }

  /**
   * A WeCom app's signed `wx.agentConfig` for the page at `url`, signed by the service with the app's
   * agent_config ticket. Rejects with `invalid_argument` for a WeChat appid or a URL the service would refuse.
   */
  async agentConfig(url: string, options: CallOptions = {}): Promise<AgentConfigBody> {
    if (!this.appid.includes(':')) {
      throw new TokenClientError(
        'invalid_argument',
        'agentConfig: only WeCom apps ("corpid:agentid") have one',
      );
    }
    const request: ServiceRequest = { action: 'jssdk_config', appid: this.appid, url, agent_config: true };
    return this.signed(request, options, parseAgentConfigBody);
  }

  private async signed<T>(
    request: Extract<ServiceRequest, { action: 'jssdk_config' }>,
    options: CallOptions,
    parse: (request: ServiceRequest, body: unknown) => T,
  ): Promise<T> {
    const { url } = request;
    if (typeof url !== 'string' || url.length > 2048 || !/^https?:\/\/[\x21-\x7e]+$/i.test(url)) {
      throw new TokenClientError(
        'invalid_argument',
        `${request.agent_config ? 'agentConfig' : 'jssdkConfig'}: url must be the absolute http(s) URL of the page, at most 2048 printable ASCII characters`,
      );
    }
    const deadline = new Deadline(this.clock, this.deadlineAt(options));
    try {
      return (await this.call(request, deadline, parse)).body;
    } finally {
      deadline.release();
    }
  }

  /** Fetches a token body (get or report), caches it when it may be kept, and answers the token. */
  private async fetchToken(request: ServiceRequest, deadline: Deadline): Promise<string> {
    const { body, sentAtMs } = await this.call(request, deadline, parseTokenBody);
    const held = this.holding(body.access_token, body.expires_in, body.expires_at, sentAtMs);
    if (held !== undefined && !this.deadTokens.includes(body.access_token)) {
      const current = this.token;
      // A slower flight must not replace a token that outlives the one it brings.
      if (current === undefined || current.usableUntilMs <= held.usableUntilMs) this.token = held;
    }
    return body.access_token;
  }

  /**
   * How long a body's value may be kept: until `expires_at` less the skew, and never longer than
   * `expires_in` counted from when the request was sent (a clock ahead of the service's, or a slow
   * answer, cannot stretch it). Undefined when it may not be kept at all — a 0-s promise, or one
   * already over on arrival: the value then goes to the callers that were waiting for it, and no
   * further.
   */
  private holding(
    value: string,
    expiresInSeconds: number,
    expiresAtSeconds: number,
    sentAtMs: number,
  ): Held | undefined {
    const expiresAtMs = Math.min(expiresAtSeconds * 1000, sentAtMs + expiresInSeconds * 1000);
    const usableUntilMs = expiresAtMs - Math.min(MAX_SKEW_MS, expiresInSeconds * 100);
    return this.clock.now() < usableUntilMs ? { value, usableUntilMs } : undefined;
  }

  /**
   * One operation, retried with jittered exponential backoff while the failure is retryable and the
   * deadline allows another attempt.
   */
  private async call<T>(
    request: ServiceRequest,
    deadline: Deadline,
    parse: (request: ServiceRequest, body: unknown) => T,
  ): Promise<{ body: T; sentAtMs: number }> {
    let lastError: TokenClientError | undefined;
    for (let attempt = 0; ; attempt++) {
      if (deadline.expired) throw this.gaveUp(request.action, lastError, attempt);
      const sentAtMs = this.clock.now();
      try {
        const raw = await this.transport.send(request, {
          deadlineAtMs: deadline.deadlineAtMs,
          signal: deadline.signal,
        });
        return { body: parse(request, raw), sentAtMs };
      } catch (err) {
        const error = asClientError(err, request);
        if (!error.retryable || error.code === 'deadline_exceeded') {
          throw error.code === 'deadline_exceeded' ? this.gaveUp(request.action, lastError, attempt) : error;
        }
        lastError = error;
      }
      const ceilingMs = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** attempt);
      const delayMs = ceilingMs / 2 + this.clock.random() * (ceilingMs / 2);
      if (this.clock.now() + delayMs >= deadline.deadlineAtMs) {
        throw this.gaveUp(request.action, lastError, attempt + 1);
      }
      await sleep(this.clock, delayMs, deadline.signal);
    }
  }

  /** A shared call, run under a deadline that joiners may extend. */
  private startFlight(deadlineAtMs: number, run: (deadline: Deadline) => Promise<string>): Flight {
    const deadline = new Deadline(this.clock, deadlineAtMs);
    const promise = run(deadline).finally(() => deadline.release());
    // Joiners handle the outcome; this keeps an unjoined rejection from being reported as unhandled.
    promise.catch(() => {});
    return { promise, deadline };
  }

  /** Waits for a shared call until this caller's own deadline. */
  private join(flight: Flight, deadlineAtMs: number, action: ServiceRequest['action']): Promise<string> {
    flight.deadline.extend(deadlineAtMs);
    // Callers that join later may extend the call past this caller's deadline: then it stops
    // waiting; while the call's deadline is its own, the call's own outcome (its last error) comes.
    return within(this.clock, flight.promise, deadlineAtMs, () =>
      flight.deadline.deadlineAtMs > deadlineAtMs ? this.deadlineError(action) : undefined,
    );
  }

  private endTokenFlight(flight: Flight): void {
    if (this.tokenFlight === flight) this.tokenFlight = undefined;
  }

  private markDead(token: string): void {
    if (this.deadTokens.includes(token)) return;
    this.deadTokens.push(token);
    if (this.deadTokens.length > DEAD_TOKENS_KEPT) this.deadTokens.shift();
  }

  private deadlineAt(options: CallOptions): number {
    const ms = options.deadlineMs === undefined ? this.defaultDeadlineMs : checkDeadline(options.deadlineMs);
    return this.clock.now() + ms;
  }

  private deadlineError(action: ServiceRequest['action']): TokenClientError {
    return new TokenClientError(
      'deadline_exceeded',
      `the token service did not answer ${action} for appid ${this.appid} before the deadline`,
    );
  }

  /** The last retryable failure, said to be final; or `deadline_exceeded` when there was none. */
  private gaveUp(
    action: ServiceRequest['action'],
    last: TokenClientError | undefined,
    attempts: number,
  ): TokenClientError {
    if (last === undefined) return this.deadlineError(action);
    return new TokenClientError(
      last.code,
      `${last.message} (gave up after ${attempts} attempt${attempts === 1 ? '' : 's'}: the deadline came)`,
      {
        retryable: last.retryable,
        ...(last.errcode !== undefined ? { errcode: last.errcode } : {}),
        ...(last.status !== undefined ? { status: last.status } : {}),
        ...(last.serviceCode !== undefined ? { serviceCode: last.serviceCode } : {}),
        cause: last,
      },
    );
  }
}

function checkDeadline(ms: unknown): number {
  if (typeof ms !== 'number' || !Number.isFinite(ms) || ms <= 0 || ms > MAX_DEADLINE_MS) {
    throw new TokenClientError(
      'invalid_argument',
      `deadlineMs must be a number of milliseconds above 0 and at most ${MAX_DEADLINE_MS}`,
    );
  }
  return ms;
}

/** A transport's rejection as a TokenClientError (a transport bug becomes a non-retryable one). */
function asClientError(err: unknown, request: ServiceRequest): TokenClientError {
  if (err instanceof TokenClientError) return err;
  return new TokenClientError(
    'service_unreachable',
    `the transport failed on ${request.action}: ${err instanceof Error ? err.name : 'unknown error'}`,
    { retryable: false, cause: err },
  );
}
