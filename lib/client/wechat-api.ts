/**
 * wechat-api (1.x, callbacks) on the service's tokens.
 *
 * Its hooks (lib/api_common.js): `new API(appid, appsecret, getToken(cb), saveToken(token, cb))`.
 * Every API method runs through `preRequest(method, args)`, which asks `getToken` for
 * `{accessToken, expireTime}`, puts it in `this.token` and calls the method; when `getToken` yields
 * nothing valid it fetches from WeChat with the AppSecret (`getAccessToken`), and on a 40001 answer it
 * calls `getToken` again — which, with shared storage, yields the same dead token. Tickets go through
 * `registerTicketHandle(getTicketToken(type, cb), saveTicketToken(type, ticket, cb))`.
 *
 * The adapter's `getToken` always yields the client's token (or the client's error), and its
 * `preRequest` reports a token WeChat rejected (40001, 40014, 42001) and calls the method once more
 * with the new token. `getAccessToken`, `getTicket` and the ticket hooks go to the service, and
 * `getJsConfig` is signed by the service, so neither the SDK nor its AppSecret (a dummy) ever reach
 * WeChat's token or ticket endpoints.
 */
import { NOT_A_SECRET, sdkExpireTime } from './adapter-support.ts';
import type { TokenClient } from './token-client.ts';
import { wechatErrcode } from './wechat-errcode.ts';

type Callback = (err: unknown, data?: unknown, res?: unknown) => void;
type AccessToken = { accessToken: string; expireTime: number };

/** What the adapter uses of a wechat-api `API` instance. */
export interface WechatApiLike {
  token?: unknown;
  preRequest(method: (...args: unknown[]) => unknown, args: ArrayLike<unknown>, retried?: boolean): void;
  getAccessToken(callback: Callback): unknown;
  getTicket(type: string | Callback, callback?: Callback): void;
  registerTicketHandle(
    getTicketToken: (type: string | Callback, callback?: Callback) => void,
    saveTicketToken: (type: unknown, ticket: unknown, callback?: Callback) => void,
  ): void;
  getJsConfig(
    param: { url: string; debug?: boolean; jsApiList?: string[]; beta?: boolean },
    callback: Callback,
  ): void;
}

/** wechat-api's `API` class (the module's export), with its `AccessToken` factory. */
export interface WechatApiClass<T extends WechatApiLike> {
  new (
    appid: string,
    appsecret: string,
    getToken: (callback: Callback) => void,
    saveToken: (token: unknown, callback: Callback) => void,
  ): T;
  AccessToken?: (accessToken: string, expireTime: number) => AccessToken;
}

/**
 * A ready wechat-api instance for `client.appid` whose tokens and tickets come from the service:
 * `const api = wechatApi(require('wechat-api'), client)`. Its API methods report a token WeChat rejects
 * and retry once; a service failure reaches the callback as the client's `TokenClientError`.
 */
export function wechatApi<T extends WechatApiLike>(API: WechatApiClass<T>, client: TokenClient): T {
  const tokenObject = (token: string): AccessToken => {
    const expireTime = sdkExpireTime(client, token);
    // The SDK's own AccessToken carries isValid(), which some callers use.
    return API.AccessToken ? API.AccessToken(token, expireTime) : { accessToken: token, expireTime };
  };
  const api = new API(
    client.appid,
    NOT_A_SECRET,
    (callback) => {
      client.getToken().then(
        (token) => callback(null, tokenObject(token)),
        (err: unknown) => callback(err),
      );
    },
    (_token, callback) => callback(null),
  );

  api.preRequest = (method, args) => {
    const all = Array.prototype.slice.call(args);
    const callback = all.pop() as Callback;
    client
      .withToken(
        (token) =>
          new Promise<[unknown, unknown, unknown]>((resolve) => {
            // Methods read this.token synchronously, as soon as they are called.
            api.token = tokenObject(token);
            method.apply(api, [
              ...all,
              (err: unknown, data: unknown, res: unknown) => resolve([err, data, res]),
            ]);
          }),
        { errcodeOf: (outcome) => outcomeErrcode(outcome) },
      )
      .then(
        ([err, data, res]) => callback(err, data, res),
        (err: unknown) => callback(err),
      );
  };

  api.getAccessToken = (callback) => {
    client.getToken().then(
      (token) => callback(null, tokenObject(token)),
      (err: unknown) => callback(err),
    );
    return api;
  };

  const ticketOf = (type: string | Callback, callback?: Callback) => {
    const done = (typeof type === 'function' ? type : callback) as Callback;
    const ticketType = type === 'wx_card' ? 'wx_card' : 'jsapi';
    client.getTicket(ticketType).then(
      // The SDK checks expireTime once, right after this answer; the client keeps the ticket's real expiry.
      (ticket) => done(null, { ticket, expireTime: Date.now() + 1_000 }),
      (err: unknown) => done(err),
    );
  };
  api.registerTicketHandle(ticketOf, (_type, ticket, callback) => {
    (typeof ticket === 'function' ? (ticket as Callback) : callback)?.(null);
  });
  api.getTicket = ticketOf;

  api.getJsConfig = (param, callback) => {
    client.jssdkConfig(param.url).then(
      (config) =>
        callback(null, {
          debug: param.debug,
          appId: config.appId,
          timestamp: String(config.timestamp),
          nonceStr: config.nonceStr,
          signature: config.signature,
          jsApiList: param.jsApiList,
          ...(param.beta ? { beta: param.beta } : {}),
        }),
      (err: unknown) => callback(err),
    );
  };
  return api;
}

/** WeChat's errcode in a method's callback arguments: the body's, or the SDK error's `code`. */
function outcomeErrcode(outcome: unknown): number | undefined {
  if (!Array.isArray(outcome)) return wechatErrcode(outcome);
  const [err, data] = outcome as [unknown, unknown];
  return wechatErrcode(data) ?? wechatErrcode(err);
}
