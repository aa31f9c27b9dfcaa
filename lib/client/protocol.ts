/**
 * What goes to the service and what comes back, on either channel: the four operations and their
 * bodies (README "Callers and their contracts"). A consumer must not trust an answer it has not
 * checked: every body is validated here before anything uses it, and anything else is
 * `service_bad_response`.
 */
import { isServiceErrorCode, TokenClientError } from './errors.ts';

/**
 * The ticket types: WeChat's getticket (`jsapi` for JS-SDK, `wx_card` for cards); a WeCom app's
 * `jsapi` (the corp's, for wx.config) and `agent_config` (the app's, for wx.agentConfig).
 */
export type TicketType = 'jsapi' | 'wx_card' | 'agent_config';

/** One operation of the service, as the direct-invoke event names it. */
export type ServiceRequest =
  | { action: 'get_token'; appid: string }
  | { action: 'refresh_token'; appid: string; invalid_token: string }
  | { action: 'get_ticket'; appid: string; type: TicketType }
  | { action: 'jssdk_config'; appid: string; url: string; agent_config?: true };

/** The token body: `expires_in` seconds are guaranteed; `expires_at` is the same promise in epoch seconds. */
export interface TokenBody {
  access_token: string;
  expires_in: number;
  expires_at: number;
}

/** The ticket body, with the same promise as the token body. */
export interface TicketBody {
  ticket: string;
  expires_in: number;
  expires_at: number;
}

/** A signed `wx.config` (the ticket itself never leaves the service). */
export interface JssdkConfigBody {
  appId: string;
  /** Epoch seconds. */
  timestamp: number;
  nonceStr: string;
  /** SHA-1, lower-case hex. */
  signature: string;
}

/** A signed `wx.agentConfig` of a WeCom app (`jssdk_config` with `agent_config: true`). */
export interface AgentConfigBody {
  corpid: string;
  agentid: string;
  /** Epoch seconds. */
  timestamp: number;
  nonceStr: string;
  /** SHA-1, lower-case hex. */
  signature: string;
}

/** Longest token or ticket accepted (the service's own bound on `invalid_token`). */
const MAX_VALUE_LENGTH = 2048;
/** A promise longer than a day is not one WeChat's 7200-s tokens can back: the body is wrong. */
const MAX_EXPIRES_IN_SECONDS = 86_400;
const PRINTABLE = /^[\x21-\x7e]+$/;

type Fields = Record<string, unknown>;

function isObject(value: unknown): value is Fields {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function badResponse(request: ServiceRequest, what: string): TokenClientError {
  return new TokenClientError(
    'service_bad_response',
    `the token service answered ${request.action} for appid ${request.appid} with ${what}`,
  );
}

/** A token or ticket as the service hands it out: printable ASCII, at most 2048 characters. */
export function isOpaqueValue(value: unknown): value is string {
  return (
    typeof value === 'string' && value.length > 0 && value.length <= MAX_VALUE_LENGTH && PRINTABLE.test(value)
  );
}

function isSeconds(value: unknown, max: number): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= 0 && value <= max;
}

/**
 * Throws the service's error as a {@link TokenClientError} when `body` is an error body; returns the
 * body otherwise. A body with an `error` key that is not a well-formed error is `service_bad_response`.
 */
export function throwIfErrorBody(request: ServiceRequest, body: unknown, status?: number): unknown {
  if (!isObject(body) || !('error' in body)) return body;
  const error = body.error;
  if (
    !isObject(error) ||
    typeof error.code !== 'string' ||
    !/^[a-z][a-z0-9_]{0,63}$/.test(error.code) ||
    typeof error.message !== 'string' ||
    typeof error.retryable !== 'boolean' ||
    (error.errcode !== undefined && !Number.isInteger(error.errcode))
  ) {
    throw badResponse(request, 'an error body that is not {"error":{code,message,retryable,errcode?}}');
  }
  const options = {
    retryable: error.retryable,
    ...(error.errcode !== undefined ? { errcode: error.errcode as number } : {}),
    ...(status !== undefined ? { status } : {}),
  };
  // The service's message says what failed and what to do, and never carries a secret or a token.
  const message = `token service: ${error.message.slice(0, 1000)}`;
  if (isServiceErrorCode(error.code)) throw new TokenClientError(error.code, message, options);
  throw new TokenClientError('unknown_service_code', `${message} (code ${error.code})`, {
    ...options,
    serviceCode: error.code,
  });
}

/** The token body, validated. */
export function parseTokenBody(request: ServiceRequest, body: unknown): TokenBody {
  const checked = throwIfErrorBody(request, body);
  if (
    !isObject(checked) ||
    !isOpaqueValue(checked.access_token) ||
    !isSeconds(checked.expires_in, MAX_EXPIRES_IN_SECONDS) ||
    !isSeconds(checked.expires_at, Number.MAX_SAFE_INTEGER)
  ) {
    throw badResponse(request, 'a body that is not {access_token, expires_in, expires_at}');
  }
  return {
    access_token: checked.access_token,
    expires_in: checked.expires_in,
    expires_at: checked.expires_at,
  };
}

/** The ticket body, validated. */
export function parseTicketBody(request: ServiceRequest, body: unknown): TicketBody {
  const checked = throwIfErrorBody(request, body);
  if (
    !isObject(checked) ||
    !isOpaqueValue(checked.ticket) ||
    !isSeconds(checked.expires_in, MAX_EXPIRES_IN_SECONDS) ||
    !isSeconds(checked.expires_at, Number.MAX_SAFE_INTEGER)
  ) {
    throw badResponse(request, 'a body that is not {ticket, expires_in, expires_at}');
  }
  return { ticket: checked.ticket, expires_in: checked.expires_in, expires_at: checked.expires_at };
}

/** The wx.config body, validated; its `appId` must be the appid asked for (a WeCom app's corpid). */
export function parseJssdkConfigBody(request: ServiceRequest, body: unknown): JssdkConfigBody {
  const checked = throwIfErrorBody(request, body);
  if (!isObject(checked) || checked.appId !== request.appid.split(':')[0] || !isSigned(checked)) {
    throw badResponse(request, 'a body that is not {appId, timestamp, nonceStr, signature} for this appid');
  }
  return {
    appId: checked.appId as string,
    timestamp: checked.timestamp,
    nonceStr: checked.nonceStr,
    signature: checked.signature,
  };
}

/** The wx.agentConfig body, validated; `corpid:agentid` must be the app asked for. */
export function parseAgentConfigBody(request: ServiceRequest, body: unknown): AgentConfigBody {
  const checked = throwIfErrorBody(request, body);
  if (
    !isObject(checked) ||
    typeof checked.corpid !== 'string' ||
    typeof checked.agentid !== 'string' ||
    `${checked.corpid}:${checked.agentid}` !== request.appid ||
    !isSigned(checked)
  ) {
    throw badResponse(
      request,
      'a body that is not {corpid, agentid, timestamp, nonceStr, signature} for this app',
    );
  }
  return {
    corpid: checked.corpid,
    agentid: checked.agentid,
    timestamp: checked.timestamp,
    nonceStr: checked.nonceStr,
    signature: checked.signature,
  };
}

function isSigned(body: Fields): body is Fields & { timestamp: number; nonceStr: string; signature: string } {
  return (
    isSeconds(body.timestamp, Number.MAX_SAFE_INTEGER) &&
    typeof body.nonceStr === 'string' &&
    /^[A-Za-z0-9_-]{1,64}$/.test(body.nonceStr) &&
    typeof body.signature === 'string' &&
    /^[0-9a-f]{40}$/.test(body.signature)
  );
}
