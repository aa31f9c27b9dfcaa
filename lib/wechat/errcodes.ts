import type { ApiEndpoint } from '../domain.ts';
import { type ErrorCode, ServiceError } from '../errors.ts';

/** Business-API errcodes that mean "this access token is dead": refresh it (WxJava's list). */
export const TOKEN_INVALID_ERRCODES: ReadonlySet<number> = new Set([40001, 40014, 42001]);

const CREDENTIALS = new Set([40001, 40013, 40125, 40243]);
const IP_NOT_WHITELISTED = new Set([40164, 61004]);
const IP_CONFIRMATION = new Set([89501, 89503, 89506, 89507]);
const REQUEST_BUGS = new Set([40002, 41002, 41004, 43001, 43002, 47001, 40097]);

const PATHS: Record<ApiEndpoint, string> = {
  token: '/cgi-bin/token',
  stable_token: '/cgi-bin/stable_token',
  ticket: '/cgi-bin/ticket/getticket',
  clear_quota: '/cgi-bin/clear_quota/v2',
  wecom_gettoken: '/cgi-bin/gettoken',
  wecom_jsapi_ticket: '/cgi-bin/get_jsapi_ticket',
  wecom_agent_config_ticket: '/cgi-bin/ticket/get',
  quota: '/cgi-bin/openapi/quota/get',
};

const WECOM_ENDPOINTS: ReadonlySet<ApiEndpoint> = new Set([
  'wecom_gettoken',
  'wecom_jsapi_ticket',
  'wecom_agent_config_ticket',
]);

/** Endpoints that take an access token: their 40001 means the token is dead, not the AppSecret wrong. */
const TAKES_ACCESS_TOKEN: ReadonlySet<ApiEndpoint> = new Set(['ticket', 'quota']);

/** Whether an errcode is worth another attempt within this invocation (WeChat busy). */
export function isTransientErrcode(errcode: number): boolean {
  return errcode === -1;
}

/**
 * WeChat's errcode → the service's typed error, with a message that says what to do.
 * `errmsg` has already been stripped of anything secret by the caller.
 */
export function errorForErrcode(
  endpoint: ApiEndpoint,
  appid: string,
  errcode: number,
  errmsg: string,
): ServiceError {
  const path = PATHS[endpoint];
  const said = `WeChat ${path} answered errcode ${errcode} (${errmsg})`;
  const make = (code: ErrorCode, advice: string) =>
    new ServiceError(code, `${said} for appid ${appid}: ${advice}`, { errcode });
  if (WECOM_ENDPOINTS.has(endpoint)) return weComError(endpoint, errcode, errmsg, make);

  if (!TAKES_ACCESS_TOKEN.has(endpoint) && CREDENTIALS.has(errcode)) {
    const advice =
      errcode === 40013
        ? 'the appid is not a valid WeChat appid; check the apps list in the credentials secret'
        : errcode === 40243
          ? 'the AppSecret is frozen; an administrator must unfreeze it in the WeChat platform (takes about 10 minutes)'
          : 'the AppSecret is wrong or was reset; put the current AppSecret into the credentials secret';
    return make('wechat_credentials_rejected', advice);
  }
  if (IP_NOT_WHITELISTED.has(errcode)) {
    const ip = /invalid ip ([0-9a-fA-F.:]+)/.exec(errmsg)?.[1];
    return make(
      'wechat_ip_not_whitelisted',
      ip
        ? `add this IP to the WeChat IP whitelist: ${ip} (the NAT gateway's Elastic IP)`
        : "add the NAT gateway's Elastic IP to the WeChat IP whitelist",
    );
  }
  if (IP_CONFIRMATION.has(errcode)) {
    return make(
      'wechat_ip_confirmation_required',
      errcode === 89506 || errcode === 89507
        ? 'an administrator rejected this egress IP; add it to the WeChat IP whitelist, then wait for the block to end'
        : 'an administrator must confirm this egress IP (WeChat sent them a message), or add it to the WeChat IP whitelist',
    );
  }
  if (errcode === 45009) {
    return make(
      'wechat_quota_exhausted',
      "the endpoint's daily quota is used up; it resets at midnight China time (UTC+8), or an administrator can reset it " +
        'now with POST /cgi-bin/clear_quota/v2 (appid + appsecret; 10 resets a month)',
    );
  }
  if (errcode === 48006) {
    return make(
      'wechat_rejected',
      "this month's 10 quota resets are used up (clear_quota and the WeChat console share them); " +
        'the daily quota resets at midnight China time (UTC+8)',
    );
  }
  if (errcode === 45011)
    return make('wechat_rate_limited', 'per-minute frequency limit reached; retry after a minute');
  if (errcode === -1) return make('wechat_unavailable', 'WeChat is busy; retry shortly');
  if (errcode === 76021 || errcode === 76022) {
    return make(
      'wechat_rejected',
      'getApiQuota cannot report this endpoint (cgi_path); this is a bug in the service',
    );
  }
  if (REQUEST_BUGS.has(errcode))
    return make('wechat_rejected', 'the request was malformed; this is a bug in the service');
  return make('wechat_rejected', 'not retried; see WeChat global error codes');
}

/**
 * WeCom's errcodes (wechat-facts §6). They overlap WeChat's numbers with other meanings: 45009 is a
 * frequency limit (a minute or an hour, not a daily quota), 40001 at gettoken is a wrong Secret.
 */
function weComError(
  endpoint: ApiEndpoint,
  errcode: number,
  errmsg: string,
  make: (code: ErrorCode, advice: string) => ServiceError,
): ServiceError {
  const tokenEndpoint = endpoint === 'wecom_gettoken';
  if (errcode === 60020) {
    // errmsg: "not allow to access from your ip, hint: [...], from ip: 1.2.3.4, more info at ..."
    const ip = /from ip:? ?([0-9a-fA-F.:]+[0-9a-fA-F])/.exec(errmsg)?.[1];
    return make(
      'wechat_ip_not_whitelisted',
      ip
        ? `add this IP to the app's trusted IPs (企业可信IP) in the WeCom admin console: ${ip} (the NAT gateway's Elastic IP)`
        : "add the NAT gateway's Elastic IP to the app's trusted IPs (企业可信IP) in the WeCom admin console",
    );
  }
  if (errcode === 40013) {
    return make(
      'wechat_credentials_rejected',
      'the corpid is not a valid WeCom corp ID; check the corpid of the app entry',
    );
  }
  if (errcode === 40091 || (tokenEndpoint && errcode === 40001)) {
    return make(
      'wechat_credentials_rejected',
      "the app's Secret is wrong, was reset, belongs to another corp or app, or the app is disabled; " +
        'put the current Secret into the credentials secret',
    );
  }
  if (errcode === 45009 || errcode === 45033) {
    return make(
      'wechat_rate_limited',
      errcode === 45009
        ? "WeCom's frequency limit for this API was reached; it lifts after the minute (or hour) WeCom blocks; retry then"
        : "WeCom's concurrency limit for this API was reached; retry shortly",
    );
  }
  if (errcode === -1) return make('wechat_unavailable', 'WeCom is busy; retry shortly');
  if (errcode === 41001 || errcode === 41002 || errcode === 41004)
    return make('wechat_rejected', 'the request was malformed; this is a bug in the service');
  return make('wechat_rejected', 'not retried; see WeCom global error codes');
}
