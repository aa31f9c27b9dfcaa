/**
 * The simulator's getApiQuota: `POST /cgi-bin/openapi/quota/get?access_token=…` with the JSON body
 * `{"cgi_path":"/cgi-bin/token"}` answers the app's real counts of the current quota day (UTC+8):
 * `{"errcode":0,"errmsg":"ok","quota":{"daily_limit":…,"used":…,"remain":…}}`.
 *
 * `used` counts what the simulator's daily quota counts: successful calls (an outside party's
 * `rotateExternally` included). Paths it keeps no quota for answer 76021 (cgi_path not found), as
 * WeChat does for paths it does not know. Mounted by wechat-simulator.ts, which passes the few things
 * it needs through {@link QuotaApiHost}.
 */

/** What the simulator lends this endpoint. */
export interface QuotaApiHost<Reply> {
  /** The app the access token belongs to, or the error reply (41001, 40001, 42001) WeChat gives. */
  checkAccessToken(params: URLSearchParams): { appid: string } | Reply;
  /** Today's usage and limit of one endpoint of the app (null: the simulator keeps no quota for it). */
  usage(appid: string, cgiPath: string): { used: number; limit: number } | null;
  error(errcode: number, errmsg?: string): Reply;
  ok(body: Record<string, unknown>): Reply;
}

export function quotaGet<Reply>(
  host: QuotaApiHost<Reply>,
  method: string,
  params: URLSearchParams,
  rawBody: string,
): Reply {
  if (method !== 'POST') return host.error(43002);
  const checked = host.checkAccessToken(params);
  if (!(typeof checked === 'object' && checked !== null && 'appid' in checked)) return checked;
  let cgiPath: unknown;
  try {
    cgiPath = (JSON.parse(rawBody) as { cgi_path?: unknown } | null)?.cgi_path;
  } catch {
    return host.error(47001);
  }
  if (typeof cgiPath !== 'string' || cgiPath === '') return host.error(47001);
  const usage = host.usage(checked.appid, cgiPath);
  if (!usage) return host.error(76021, 'cgi_path not found');
  const used = Math.min(usage.used, usage.limit);
  return host.ok({
    errcode: 0,
    errmsg: 'ok',
    quota: { daily_limit: usage.limit, used, remain: usage.limit - used },
  });
}
