import type { Endpoint, Grant, TicketType, TokenApi } from '../domain.ts';
import { ServiceError } from '../errors.ts';
import type { CallOptions, Clock, WeChatApi } from '../ports.ts';
import { errorForErrcode, isTransientErrcode } from './errcodes.ts';

/** The structural subset of `fetch` the client uses (the platform's global fetch in production). */
export type FetchLike = (url: string, init: RequestInit) => Promise<Response>;

export interface WeChatClientOptions {
  baseUrl: string;
  /** Timeout of one attempt. */
  attemptTimeoutMs: number;
  clock: Clock;
  fetch?: FetchLike;
  /** Called before each retry: reason and attempt number, for metrics and logs. */
  onRetry?: (endpoint: Endpoint, reason: string, attempt: number) => void;
}

/**
 * A failure after which WeChat may have processed the request all the same (a timeout, a reset
 * connection, a gateway error). For the classic token endpoint that matters: a silent success
 * issued a new token, and asking again would be a second refresh that kills the current token at
 * once. Such calls are not repeated here; the caller decides.
 */
export class AmbiguousUpstreamError extends ServiceError {}

const MAX_ATTEMPTS = 4;
/** Connection failures that prove the request never reached WeChat. */
const NOT_SENT: ReadonlySet<string> = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
]);
const MAX_BODY_BYTES = 64 * 1024;
/** WeChat says to reserve 512 characters; accept generously more, never unbounded. */
const MAX_CREDENTIAL_LENGTH = 2048;

/**
 * WeChat's token and ticket endpoints over fetch. Errors arrive as HTTP 200 with an errcode body and
 * are mapped to typed errors; busy (-1), 5xx and network failures are retried with jittered backoff
 * inside the deadline; nothing else is retried. The AppSecret travels in the request only and is
 * scrubbed from anything WeChat echoes back.
 */
export class WeChatClient implements WeChatApi {
  readonly #options: WeChatClientOptions;
  readonly #fetch: FetchLike;

  constructor(options: WeChatClientOptions) {
    this.#options = options;
    this.#fetch = options.fetch ?? ((url, init) => fetch(url, init));
  }

  /** `GET /cgi-bin/token` (classic: every call issues a new token) or `POST /cgi-bin/stable_token`. */
  async fetchAccessToken(
    app: { appid: string; secret: string },
    api: TokenApi,
    options: CallOptions & { forceRefresh?: boolean },
  ): Promise<Grant> {
    const base = this.#options.baseUrl;
    const request =
      api === 'classic'
        ? {
            endpoint: 'token' as const,
            url: `${base}/cgi-bin/token?grant_type=client_credential&appid=${encodeURIComponent(app.appid)}&secret=${encodeURIComponent(app.secret)}`,
            init: { method: 'GET' },
          }
        : {
            endpoint: 'stable_token' as const,
            url: `${base}/cgi-bin/stable_token`,
            init: {
              method: 'POST',
              headers: { 'content-type': 'application/json' },
              body: JSON.stringify({
                grant_type: 'client_credential',
                appid: app.appid,
                secret: app.secret,
                force_refresh: options.forceRefresh === true,
              }),
            },
          };
    // Only a call that invalidates nothing may be repeated after an ambiguous failure.
    const repeatable = api === 'stable' && options.forceRefresh !== true;
    const body = await this.#call(
      request.endpoint,
      app.appid,
      request.url,
      request.init,
      options,
      [app.secret],
      repeatable,
    );
    return parseGrant(request.endpoint, app.appid, body, 'access_token');
  }

  /** `GET /cgi-bin/ticket/getticket`: errcode 40001/42001 there means the access token is dead. */
  async fetchTicket(
    appid: string,
    accessToken: string,
    type: TicketType,
    options: CallOptions,
  ): Promise<Grant> {
    const url = `${this.#options.baseUrl}/cgi-bin/ticket/getticket?access_token=${encodeURIComponent(accessToken)}&type=${type}`;
    // Fetching a ticket again invalidates nothing: always repeatable.
    const body = await this.#call('ticket', appid, url, { method: 'GET' }, options, [accessToken], true);
    return parseGrant('ticket', appid, body, 'ticket');
  }

  /**
   * `POST /cgi-bin/clear_quota/v2`: resets the app's daily API quotas, using one of WeChat's 10
   * resets a month (errcode 48006 when they are used up). The documentation has named the appid and
   * appsecret both as URL and as JSON body parameters: both are sent. Never repeated after an
   * ambiguous failure, which may have used a reset.
   */
  async clearQuota(app: { appid: string; secret: string }, options: CallOptions): Promise<void> {
    const query = `appid=${encodeURIComponent(app.appid)}&appsecret=${encodeURIComponent(app.secret)}`;
    await this.#call(
      'clear_quota',
      app.appid,
      `${this.#options.baseUrl}/cgi-bin/clear_quota/v2?${query}`,
      {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ appid: app.appid, appsecret: app.secret }),
      },
      options,
      [app.secret],
      false,
    );
  }

  async #call(
    endpoint: Endpoint,
    appid: string,
    url: string,
    init: RequestInit,
    { deadlineAtMs }: CallOptions,
    secrets: string[],
    repeatable: boolean,
  ): Promise<Record<string, unknown>> {
    const { clock, attemptTimeoutMs } = this.#options;
    for (let attempt = 1; ; attempt++) {
      const remainingMs = deadlineAtMs - clock.now();
      if (remainingMs <= 0) throw timeoutError(endpoint, appid);
      let failure: ServiceError;
      try {
        const body = await this.#attempt(endpoint, appid, url, init, Math.min(attemptTimeoutMs, remainingMs));
        const errcode = body.errcode;
        if (typeof errcode === 'number' && errcode !== 0) {
          const errmsg = scrub(typeof body.errmsg === 'string' ? body.errmsg : '', secrets);
          failure = errorForErrcode(endpoint, appid, errcode, errmsg);
          if (!isTransientErrcode(errcode)) throw failure;
        } else {
          return body;
        }
      } catch (err) {
        if (!(err instanceof RetryableFailure)) throw err;
        if (err.ambiguous && !repeatable) {
          throw new AmbiguousUpstreamError(err.error.code, err.error.message, { cause: err.error });
        }
        failure = err.error;
      }
      if (attempt >= MAX_ATTEMPTS) throw failure;
      // Full jitter: 0..(100 ms × 2^n), so instances that failed together do not retry together.
      const backoffMs = clock.random() * 100 * 2 ** (attempt - 1);
      if (clock.now() + backoffMs >= deadlineAtMs) throw failure;
      this.#options.onRetry?.(
        endpoint,
        failure.errcode === undefined ? failure.code : String(failure.errcode),
        attempt,
      );
      await clock.sleep(backoffMs);
    }
  }

  async #attempt(
    endpoint: Endpoint,
    appid: string,
    url: string,
    init: RequestInit,
    timeoutMs: number,
  ): Promise<Record<string, unknown>> {
    let response: Response;
    try {
      response = await this.#fetch(url, {
        ...init,
        signal: AbortSignal.timeout(Math.max(1, Math.floor(timeoutMs))),
      });
    } catch (err) {
      if (isAbort(err)) throw new RetryableFailure(timeoutError(endpoint, appid), true);
      // Never the URL or the raw message: the classic URL carries the AppSecret.
      throw new RetryableFailure(
        new ServiceError(
          'wechat_unavailable',
          `WeChat ${endpoint} could not be reached (${networkCode(err)}); retry shortly`,
          {
            cause: networkCode(err),
          },
        ),
        !NOT_SENT.has(networkCode(err)),
      );
    }
    let text: string;
    try {
      text = await response.text();
    } catch (err) {
      if (isAbort(err)) throw new RetryableFailure(timeoutError(endpoint, appid), true);
      throw new RetryableFailure(
        new ServiceError(
          'wechat_unavailable',
          `WeChat ${endpoint} connection failed mid-answer (${networkCode(err)})`,
        ),
        true,
      );
    }
    if (response.status >= 500) {
      throw new RetryableFailure(
        new ServiceError(
          'wechat_unavailable',
          `WeChat ${endpoint} answered HTTP ${response.status}; retry shortly`,
        ),
        // A gateway error says nothing about whether the backend issued a token.
        true,
      );
    }
    if (response.status !== 200 || text.length > MAX_BODY_BYTES) {
      throw new ServiceError(
        'wechat_bad_response',
        `WeChat ${endpoint} answered HTTP ${response.status} with an unexpected body`,
      );
    }
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      throw new ServiceError(
        'wechat_bad_response',
        `WeChat ${endpoint} answered with a body that is not JSON`,
      );
    }
    if (typeof body !== 'object' || body === null || Array.isArray(body)) {
      throw new ServiceError(
        'wechat_bad_response',
        `WeChat ${endpoint} answered with JSON that is not an object`,
      );
    }
    return body as Record<string, unknown>;
  }
}

class RetryableFailure extends Error {
  /** `ambiguous`: WeChat may have processed the request (see AmbiguousUpstreamError). */
  constructor(
    readonly error: ServiceError,
    readonly ambiguous: boolean,
  ) {
    super(error.message);
  }
}

function parseGrant(endpoint: Endpoint, appid: string, body: Record<string, unknown>, field: string): Grant {
  const value = body[field];
  const expiresIn = body.expires_in;
  if (
    typeof value !== 'string' ||
    value.length === 0 ||
    value.length > MAX_CREDENTIAL_LENGTH ||
    !/^[\x21-\x7e]+$/.test(value)
  ) {
    throw new ServiceError(
      'wechat_bad_response',
      `WeChat ${endpoint} answered for appid ${appid} without a usable ${field}`,
    );
  }
  if (typeof expiresIn !== 'number' || !Number.isInteger(expiresIn) || expiresIn < 1 || expiresIn > 86_400) {
    throw new ServiceError(
      'wechat_bad_response',
      `WeChat ${endpoint} answered for appid ${appid} with expires_in that is not a whole number of seconds from 1 to 86400`,
    );
  }
  return { value, expiresInSeconds: expiresIn };
}

function timeoutError(endpoint: Endpoint, appid: string): ServiceError {
  return new ServiceError(
    'wechat_timeout',
    `WeChat ${endpoint} did not answer for appid ${appid} within the time this request had left; retry`,
  );
}

/** Removes every occurrence of the given secrets (AppSecret, access token) and bounds the length. */
function scrub(text: string, secrets: string[]): string {
  let out = text;
  for (const secret of secrets) if (secret.length > 0) out = out.split(secret).join('[redacted]');
  // biome-ignore lint/suspicious/noControlCharactersInRegex: stripping control characters is the point
  return out.replace(/[\x00-\x1f\x7f]/g, ' ').slice(0, 200);
}

function isAbort(err: unknown): boolean {
  return err instanceof Error && (err.name === 'TimeoutError' || err.name === 'AbortError');
}

function networkCode(err: unknown): string {
  const cause = err instanceof Error ? (err.cause as { code?: unknown } | undefined) : undefined;
  const code = cause?.code ?? (err as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' && /^[A-Z_]{2,40}$/.test(code) ? code : 'network error';
}
