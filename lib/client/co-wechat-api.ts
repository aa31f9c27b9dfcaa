/**
 * co-wechat-api (3.x) on the service's tokens.
 *
 * Its hooks (lib/api_common.js): `new API(appid, appsecret, getToken, saveToken, tokenFromCustom)`.
 * `ensureAccessToken()`, which every API method calls first, asks `getToken()` for
 * `{accessToken, expireTime}`; when that is missing or expired it fetches from WeChat with the
 * AppSecret — unless `tokenFromCustom` is set, in which case it throws errcode 40001. Its `request()`
 * handles a 40001/42001 answer by `saveToken(null)` and a fresh fetch from WeChat with the AppSecret —
 * again unless `tokenFromCustom` is set, in which case it only throws. Tickets go through
 * `registerTicketHandle(getTicketToken, saveTicketToken)` and `getTicket(type)` (getticket at WeChat).
 *
 * The adapter sets `tokenFromCustom`, so the SDK never fetches a token itself; `getToken` answers the
 * client's token; `request` — the one place every API method's HTTP call goes through — reports a
 * token WeChat rejected (40001, 40014, 42001) and sends the same request once more with the new token
 * (in the URL's `access_token`, or `data.access_token`, where the SDK put the old one).
 * `getAccessToken`, `getTicket` and the ticket hooks go to the service too, and `getJsConfig` is
 * signed by the service, so the jsapi ticket stays there.
 */
import { NOT_A_SECRET, sdkExpireTime } from './adapter-support.ts';
import type { TokenClient } from './token-client.ts';
import { isInvalidTokenErrcode, wechatErrcode } from './wechat-errcode.ts';

type RequestOptions = Record<string, unknown> & { data?: unknown };

/** What the adapter uses of a co-wechat-api `API` instance. */
export interface CoWechatApiLike {
  appid: string;
  request(url: string, opts?: RequestOptions, retry?: number): Promise<unknown>;
  getAccessToken(): Promise<unknown>;
  getTicket(type?: string): Promise<unknown>;
  registerTicketHandle(
    getTicketToken: (type: string) => Promise<unknown>,
    saveTicketToken: (type: string, ticket: unknown) => Promise<void>,
  ): void;
  getJsConfig(param: {
    url: string;
    debug?: boolean;
    jsApiList?: string[];
    openTagList?: string[];
  }): Promise<unknown>;
}

/** co-wechat-api's `API` class (the module's export). */
export interface CoWechatApiClass<T extends CoWechatApiLike> {
  new (
    appid: string,
    appsecret: string,
    getToken: () => Promise<unknown>,
    saveToken: (token: unknown) => Promise<void>,
    tokenFromCustom?: boolean,
  ): T;
}

const TOKEN_IN_QUERY = /([?&]access_token=)([^&#]*)/;

/**
 * A ready co-wechat-api instance for `client.appid` whose tokens and tickets come from the service:
 * `const api = coWechatApi(require('co-wechat-api'), client)`. Its API methods report a token WeChat
 * rejects and retry once. Errors of the service reach the caller as the client's `TokenClientError`.
 */
export function coWechatApi<T extends CoWechatApiLike>(API: CoWechatApiClass<T>, client: TokenClient): T {
  const api = new API(
    client.appid,
    NOT_A_SECRET,
    async () => {
      const token = await client.getToken();
      return { accessToken: token, expireTime: sdkExpireTime(client, token) };
    },
    async () => {},
    true,
  );
  const send = api.request.bind(api);
  api.request = async (url, opts, _retry) => {
    const sent = tokenOf(url, opts);
    if (sent === undefined) return send(url, opts, 0);
    try {
      return await send(url, opts, 0);
    } catch (err) {
      if (!isInvalidTokenErrcode(wechatErrcode(err))) throw err;
      const fresh = await client.reportInvalid(sent);
      return send(...withToken(url, opts, fresh), 0);
    }
  };
  api.getAccessToken = async () => {
    const token = await client.getToken();
    return { accessToken: token, expireTime: sdkExpireTime(client, token) };
  };
  const ticketOf = async (type?: string) => {
    const ticketType = type === 'wx_card' ? 'wx_card' : 'jsapi';
    // The SDK checks expireTime once, right after this answer; the client keeps the ticket's real expiry.
    return { ticket: await client.getTicket(ticketType), expireTime: Date.now() + 1_000 };
  };
  api.registerTicketHandle(ticketOf, async () => {});
  api.getTicket = ticketOf;
  api.getJsConfig = async (param) => {
    const config = await client.jssdkConfig(param.url);
    return {
      debug: param.debug,
      appId: config.appId,
      timestamp: String(config.timestamp),
      nonceStr: config.nonceStr,
      signature: config.signature,
      jsApiList: param.jsApiList,
      openTagList: param.openTagList ?? [],
    };
  };
  return api;
}

/** The access token a request carries: in the URL's query, or in `data` (the SDK's GET-with-data calls). */
function tokenOf(url: string, opts: RequestOptions | undefined): string | undefined {
  const match = TOKEN_IN_QUERY.exec(url);
  if (match?.[2]) return decodeURIComponent(match[2]);
  const data = opts?.data as { access_token?: unknown } | undefined;
  return typeof data?.access_token === 'string' && data.access_token !== '' ? data.access_token : undefined;
}

function withToken(
  url: string,
  opts: RequestOptions | undefined,
  token: string,
): [string, RequestOptions | undefined] {
  if (TOKEN_IN_QUERY.test(url)) {
    return [url.replace(TOKEN_IN_QUERY, (_all, key: string) => `${key}${encodeURIComponent(token)}`), opts];
  }
  return [url, { ...opts, data: { ...(opts?.data as object), access_token: token } }];
}
