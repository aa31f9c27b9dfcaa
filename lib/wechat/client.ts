import {
  type ApiEndpoint,
  type ApiQuota,
  type Grant,
  type TicketType,
  type TokenSource,
  weComApp,
} from '../domain.ts';
import { ServiceError } from '../errors.ts';
import type { CallOptions, Clock, WeChatApi } from '../ports.ts';
import { errorForErrcode, isTransientErrcode } from './errcodes.ts';
import {
  attemptOnce,
  type EndpointRequest,
  errorCode,
  parseGrant,
  RetryableFailure,
  scrub,
  timeoutError,
} from './exchange.ts';
import type { HttpTransport } from './transport.ts';

/** Where WeChat is, how long an attempt may take, and what the client runs on. */
export interface WeChatClientOptions {
  /** `https://api.weixin.qq.com`, or a stand-in's origin; no trailing slash. */
  baseUrl: string;
  /** WeCom's origin, `https://qyapi.weixin.qq.com` (the default), or a stand-in's; no trailing slash. */
  wecomBaseUrl?: string;
  /** Timeout of one attempt, in milliseconds; each attempt is also bounded by the call's deadline. */
  attemptTimeoutMs: number;
  clock: Clock;
  /** The HTTP exchange. Default: undici (lib/wechat/undici-transport.ts), loaded on the first call. */
  transport?: HttpTransport;
  /** Called before each retry: reason and attempt number, for metrics and logs. */
  onRetry?: (endpoint: ApiEndpoint, reason: string, attempt: number) => void;
}

/**
 * A failure after which WeChat may have processed the request all the same (a timeout, a reset
 * connection, a gateway error). For the classic token endpoint that matters: a silent success
 * issued a new token, and asking again would be a second refresh that kills the current token at
 * once. Such calls are not repeated here; the caller decides.
 */
export class AmbiguousUpstreamError extends ServiceError {}

const MAX_ATTEMPTS = 4;

const WECOM_BASE_URL = 'https://qyapi.weixin.qq.com';

/**
 * WeChat's token and ticket endpoints, and WeCom's for WeCom apps (`corpid:agentid`). Errors arrive as HTTP 200 with an errcode body and are mapped
 * to typed errors; busy (-1), 5xx and network failures are retried with jittered backoff inside the
 * deadline; nothing else is retried. The AppSecret travels in the request only and is scrubbed from
 * anything WeChat echoes back.
 */
export class WeChatClient implements WeChatApi {
  readonly #options: WeChatClientOptions;
  #transport: Promise<HttpTransport> | undefined;

  constructor(options: WeChatClientOptions) {
    this.#options = options;
    if (options.transport) this.#transport = Promise.resolve(options.transport);
  }

  /**
   * `GET /cgi-bin/token` (classic: every call issues a new token) or `POST /cgi-bin/stable_token`.
   * Throws `ServiceError`: `wechat_*` codes (with WeChat's errcode when it gave one), or
   * `config_invalid` when the HTTP module of the deployment is missing. An {@link AmbiguousUpstreamError}
   * means WeChat may have issued a token all the same.
   */
  async fetchAccessToken(
    app: { appid: string; secret: string },
    api: TokenSource,
    options: CallOptions & { forceRefresh?: boolean },
  ): Promise<Grant> {
    if (api === 'wecom') return this.#weComToken(app, options);
    const base = this.#options.baseUrl;
    const endpoint = api === 'classic' ? 'token' : 'stable_token';
    const request: EndpointRequest =
      api === 'classic'
        ? {
            method: 'GET',
            url: `${base}/cgi-bin/token?grant_type=client_credential&appid=${encodeURIComponent(app.appid)}&secret=${encodeURIComponent(app.secret)}`,
          }
        : {
            method: 'POST',
            url: `${base}/cgi-bin/stable_token`,
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({
              grant_type: 'client_credential',
              appid: app.appid,
              secret: app.secret,
              force_refresh: options.forceRefresh === true,
            }),
          };
    // Only a call that invalidates nothing may be repeated after an ambiguous failure.
    const repeatable = api === 'stable' && options.forceRefresh !== true;
    const body = await this.#call(endpoint, app.appid, request, options, [app.secret], repeatable);
    return parseGrant(endpoint, app.appid, body, 'access_token');
  }

  /**
   * `GET /cgi-bin/ticket/getticket`: errcode 40001/42001 there means the access token is dead.
   * Throws as {@link WeChatClient.fetchAccessToken} does; a ticket call is never ambiguous.
   */
  async fetchTicket(
    appid: string,
    accessToken: string,
    type: TicketType,
    options: CallOptions,
  ): Promise<Grant> {
    if (weComApp(appid)) return this.#weComTicket(appid, accessToken, type, options);
    const url = `${this.#options.baseUrl}/cgi-bin/ticket/getticket?access_token=${encodeURIComponent(accessToken)}&type=${type}`;
    // Fetching a ticket again invalidates nothing: always repeatable.
    const body = await this.#call('ticket', appid, { method: 'GET', url }, options, [accessToken], true);
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
      {
        method: 'POST',
        url: `${this.#options.baseUrl}/cgi-bin/clear_quota/v2?${query}`,
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ appid: app.appid, appsecret: app.secret }),
      },
      options,
      [app.secret],
      false,
    );
  }

  /**
   * WeCom's `GET /cgi-bin/gettoken?corpid=…&corpsecret=…` for the app `corpid:agentid`. WeCom does
   * not document that a call invalidates an earlier token, so a call is repeated after an ambiguous
   * failure like any other.
   */
  async #weComToken(app: { appid: string; secret: string }, options: CallOptions): Promise<Grant> {
    const wecom = weComApp(app.appid);
    if (!wecom)
      throw new ServiceError('internal_error', `appid ${app.appid} is not a WeCom app (corpid:agentid)`);
    const url = `${this.#weComBase}/cgi-bin/gettoken?corpid=${wecom.corpid}&corpsecret=${encodeURIComponent(app.secret)}`;
    const body = await this.#call(
      'wecom_gettoken',
      app.appid,
      { method: 'GET', url },
      options,
      [app.secret],
      true,
    );
    return parseGrant('wecom_gettoken', app.appid, body, 'access_token');
  }

  /**
   * WeCom's enterprise ticket (`GET /cgi-bin/get_jsapi_ticket`, signs `wx.config`) or the app's
   * (`GET /cgi-bin/ticket/get?type=agent_config`, signs `wx.agentConfig`). 40014/42001 there mean the
   * access token is dead.
   */
  async #weComTicket(
    appid: string,
    accessToken: string,
    type: TicketType,
    options: CallOptions,
  ): Promise<Grant> {
    const token = encodeURIComponent(accessToken);
    let endpoint: ApiEndpoint;
    let url: string;
    if (type === 'jsapi') {
      endpoint = 'wecom_jsapi_ticket';
      url = `${this.#weComBase}/cgi-bin/get_jsapi_ticket?access_token=${token}`;
    } else if (type === 'agent_config') {
      endpoint = 'wecom_agent_config_ticket';
      url = `${this.#weComBase}/cgi-bin/ticket/get?access_token=${token}&type=agent_config`;
    } else {
      throw new ServiceError(
        'invalid_request',
        `WeCom apps have no ${type} ticket; use jsapi or agent_config`,
      );
    }
    const body = await this.#call(endpoint, appid, { method: 'GET', url }, options, [accessToken], true);
    return parseGrant(endpoint, appid, body, 'ticket');
  }

  get #weComBase(): string {
    return this.#options.wecomBaseUrl ?? WECOM_BASE_URL;
  }

  /**
   * getApiQuota, `POST /cgi-bin/openapi/quota/get` `{"cgi_path":…}`: today's `quota{daily_limit, used,
   * remain}` of one endpoint. Read-only: repeatable. Errcode 40001/42001 means the access token is dead.
   */
  async getApiQuota(
    appid: string,
    accessToken: string,
    cgiPath: string,
    options: CallOptions,
  ): Promise<ApiQuota> {
    const body = await this.#call(
      'quota',
      appid,
      {
        method: 'POST',
        url: `${this.#options.baseUrl}/cgi-bin/openapi/quota/get?access_token=${encodeURIComponent(accessToken)}`,
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ cgi_path: cgiPath }),
      },
      options,
      [accessToken],
      true,
    );
    const quota = body.quota as Record<string, unknown> | undefined;
    const count = (v: unknown) => typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 1e9;
    if (
      typeof quota !== 'object' ||
      quota === null ||
      ![quota.daily_limit, quota.used, quota.remain].every(count)
    ) {
      throw new ServiceError(
        'wechat_bad_response',
        `WeChat quota answered for appid ${appid} without quota{daily_limit, used, remain} as whole numbers`,
      );
    }
    return {
      dailyLimit: quota.daily_limit as number,
      used: quota.used as number,
      remain: quota.remain as number,
    };
  }

  async #call(
    endpoint: ApiEndpoint,
    appid: string,
    request: EndpointRequest,
    { deadlineAtMs, beforeRetry }: CallOptions,
    secrets: string[],
    repeatable: boolean,
  ): Promise<Record<string, unknown>> {
    const { clock, attemptTimeoutMs } = this.#options;
    if (deadlineAtMs - clock.now() <= 0) throw timeoutError(endpoint, appid);
    const transport = await this.#loadTransport();
    for (let attempt = 1; ; attempt++) {
      const remainingMs = deadlineAtMs - clock.now();
      if (remainingMs <= 0) throw timeoutError(endpoint, appid);
      let failure: ServiceError;
      try {
        const body = await attemptOnce(
          transport,
          endpoint,
          appid,
          request,
          Math.min(attemptTimeoutMs, remainingMs),
        );
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
      beforeRetry?.();
    }
  }

  /**
   * The injected transport, or undici's, imported on the first upstream call: the build turns this
   * import into a separate file (dist/wechat-http.js) that the cache-hit path never loads.
   */
  #loadTransport(): Promise<HttpTransport> {
    this.#transport ??= import('./undici-transport.ts').then(
      (module) => new module.UndiciTransport(),
      (err: unknown) => {
        // Not remembered: a later call tries again.
        this.#transport = undefined;
        throw new ServiceError(
          'config_invalid',
          'the WeChat HTTP module (wechat-http.js, next to index.js) could not be loaded; deploy the complete package',
          { cause: errorCode(err) },
        );
      },
    );
    return this.#transport;
  }
}
