/**
 * node-easywechat (3.x) on the service's tokens.
 *
 * Its hooks: an application (OfficialAccount or MiniApp) takes any access-token object through
 * `setAccessToken(token)` — `getToken()`, `toQuery()` (merged into every request's query by the
 * AccessTokenAwareClient that `getClient()` returns) and `refresh()`; without one it builds its own,
 * which fetches from WeChat with the AppSecret. The JS-SDK ticket is an object set through
 * `setTicket(ticket)` (`getTicket()`, `configSignature(url, nonce?, timestamp?)`); the default one
 * fetches getticket itself. The SDK never retries a 40001: the errcode comes back in the response.
 *
 * The adapter sets a token object whose `getToken()` answers the client's token and whose `refresh()`
 * asks the service again (never WeChat); a ticket object backed by the service (`configSignature`
 * is signed by the service unless a nonce or timestamp is given); and wraps the application's client
 * so that a response with errcode 40001, 40014 or 42001 reports the token and sends the request once
 * more with the new one.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { createHash } from 'node:crypto';
import type { TokenClient } from './token-client.ts';
import { wechatErrcode } from './wechat-errcode.ts';

/** The access-token object node-easywechat expects (its RefreshableAccessTokenInterface). */
export interface EasyWechatAccessToken {
  getKey(): string;
  getToken(): Promise<string>;
  toQuery(): Promise<Record<string, string>>;
  refresh(): Promise<string>;
}

/** The JS-SDK ticket object node-easywechat's OfficialAccount expects (its JsApiTicket). */
export interface EasyWechatJsApiTicket {
  getKey(): string;
  getTicket(): Promise<string>;
  configSignature(
    url: string,
    nonce?: string | null,
    timestamp?: number | string | null,
  ): Promise<{ url: string; nonceStr: string; timestamp: number | string; appId: string; signature: string }>;
  getTicketSignature(ticket: string, nonce: string, timestamp: number | string, url: string): string;
}

/** What the adapter uses of the application's AccessTokenAwareClient. */
export interface EasyWechatHttpClientLike {
  withAccessToken(token: EasyWechatAccessToken): unknown;
  request(method: string, url: string, payload?: Record<string, unknown>): Promise<unknown>;
}

/** The one-shot parts of the next request (PresetMixin's protected fields). */
interface Prepends {
  prependHeaders?: Record<string, unknown>;
  prependData?: Record<string, unknown>;
  prependFiles?: Record<string, unknown>;
}

/** What the adapter uses of a node-easywechat application (OfficialAccount, MiniApp). */
export interface EasyWechatAppLike {
  setAccessToken(token: EasyWechatAccessToken): unknown;
  getClient(): EasyWechatHttpClientLike;
  /** OfficialAccount only; typed by its own JsApiTicket class, which the adapter's object stands in for. */
  setTicket?(ticket: never): unknown;
}

/**
 * Wires a node-easywechat application to the service and returns it:
 * `const app = easyWechat(new OfficialAccount({ app_id, secret: 'unused', … }), client)`. Build it
 * with `client.appid`; its `secret` is never used.
 */
export function easyWechat<T extends EasyWechatAppLike>(app: T, client: TokenClient): T {
  // The token of one request and its one retry, whatever other requests run meanwhile.
  const pinned = new AsyncLocalStorage<string>();
  const accessToken: EasyWechatAccessToken = {
    getKey: () => `wechat-token-service.access_token.${client.appid}`,
    getToken: () => {
      const token = pinned.getStore();
      return token === undefined ? client.getToken() : Promise.resolve(token);
    },
    toQuery: async () => ({ access_token: await accessToken.getToken() }),
    refresh: () => client.getToken({ forceFetch: true }),
  };
  app.setAccessToken(accessToken);
  app.setTicket?.(serviceTicket(client) as never);

  const http = app.getClient();
  const prepends = http as EasyWechatHttpClientLike & Prepends;
  http.withAccessToken(accessToken);
  const send = http.request.bind(http);
  http.request = (method, url, payload = {}) => {
    // One-shot parts of a request (withHeader, with, withFile) are consumed by its first sending.
    const headers = prepends.prependHeaders ? { ...prepends.prependHeaders } : undefined;
    const data = prepends.prependData ? { ...prepends.prependData } : undefined;
    const uploads = prepends.prependFiles !== undefined && Object.keys(prepends.prependFiles).length > 0;
    let attempt = 0;
    return client.withToken(
      (token) => {
        if (attempt++ > 0) {
          if (headers) prepends.prependHeaders = { ...headers };
          if (data) prepends.prependData = { ...data };
        }
        return pinned.run(token, () => send(method, url, { ...payload }));
      },
      // A file stream cannot be sent twice: an upload is not retried.
      { errcodeOf: (response) => (uploads ? undefined : responseErrcode(response)) },
    );
  };
  return app;
}

/** The JS-SDK ticket backed by the service. */
function serviceTicket(client: TokenClient): EasyWechatJsApiTicket {
  const ticket: EasyWechatJsApiTicket = {
    getKey: () => `wechat-token-service.jsapi_ticket.${client.appid}`,
    getTicket: () => client.getTicket('jsapi'),
    async configSignature(url, nonce, timestamp) {
      if (!nonce && !timestamp) {
        const config = await client.jssdkConfig(url);
        return { url, ...config };
      }
      // The caller chose the nonce or the time: sign here, as the SDK would, with the service's ticket.
      const nonceStr = nonce || Math.random().toString(36).slice(2, 12);
      const time = timestamp || Math.floor(Date.now() / 1000);
      const signature = ticket.getTicketSignature(await client.getTicket('jsapi'), nonceStr, time, url);
      return { url, nonceStr, timestamp: time, appId: client.appid, signature };
    },
    getTicketSignature: (value, nonce, time, url) =>
      createHash('sha1')
        .update(`jsapi_ticket=${value}&noncestr=${nonce}&timestamp=${time}&url=${url}`)
        .digest('hex'),
  };
  return ticket;
}

/** WeChat's errcode in an HttpClientResponse (its parsed body) or in a thrown error. */
function responseErrcode(response: unknown): number | undefined {
  const toObject = (response as { toObject?: unknown } | null)?.toObject;
  if (typeof toObject === 'function') {
    try {
      return wechatErrcode(toObject.call(response));
    } catch {
      return undefined;
    }
  }
  return wechatErrcode(response);
}
