/**
 * The operations every channel offers (direct invoke `action`, or the HTTP route): their input,
 * validated field by field, and their bodies. The ticket leaves the service only through get_ticket.
 */
import {
  APPID_PATTERN,
  type CallContext,
  type Credentials,
  type Served,
  type TicketType,
  weComApp,
} from '../lib/domain.ts';
import { ServiceError } from '../lib/errors.ts';
import { jsapiSignature, newNonce, pageUrlForSignature } from '../lib/jssdk/signature.ts';
import type { Clock, SecretSource } from '../lib/ports.ts';
import { unknownAppid } from '../lib/secrets/credentials.ts';
import type { TokenService } from '../lib/token/service.ts';

/** The operations every channel offers (direct invoke `action`, or the HTTP route). */
export type Operation = 'get_token' | 'refresh_token' | 'get_ticket' | 'jssdk_config';

export const OPERATIONS: readonly Operation[] = ['get_token', 'refresh_token', 'get_ticket', 'jssdk_config'];

/** Validated input of one operation. */
export type Request =
  | { operation: 'get_token'; appid: string }
  | { operation: 'refresh_token'; appid: string; invalidToken: string }
  | { operation: 'get_ticket'; appid: string; type: TicketType }
  /** `agentConfig`: a WeCom app's `wx.agentConfig`, signed with its agent_config ticket. */
  | { operation: 'jssdk_config'; appid: string; url: string; agentConfig: boolean };

/** Validates the fields of an operation; every failure is `invalid_request` naming the field. */
export function parseRequest(operation: Operation, fields: Record<string, unknown>): Request {
  const appid = parseAppid(fields.appid);
  switch (operation) {
    case 'get_token':
      return { operation, appid };
    case 'refresh_token':
      return { operation, appid, invalidToken: parseToken(fields.invalid_token) };
    case 'get_ticket':
      return { operation, appid, type: parseTicketType(fields.type, appid) };
    case 'jssdk_config':
      return {
        operation,
        appid,
        url: pageUrlForSignature(fields.url),
        agentConfig: parseAgentConfig(fields.agent_config, appid),
      };
  }
}

export function parseAppid(value: unknown): string {
  if (value === undefined || value === null || value === '') {
    throw new ServiceError(
      'invalid_request',
      'appid is required: the WeChat appid, "wx" followed by 16 hex digits, or a WeCom app as "corpid:agentid"',
    );
  }
  if (typeof value !== 'string' || !APPID_PATTERN.test(value)) {
    throw new ServiceError(
      'invalid_request',
      'appid must be a WeChat appid ("wx" followed by 16 lower-case hex digits) or a WeCom app ' +
        '("corpid:agentid", e.g. "ww0123456789abcdef:1000002")',
    );
  }
  return value;
}

function parseToken(value: unknown): string {
  if (
    typeof value !== 'string' ||
    value.length === 0 ||
    value.length > 2048 ||
    !/^[\x21-\x7e]+$/.test(value)
  ) {
    throw new ServiceError(
      'invalid_request',
      'invalid_token must be the access token WeChat rejected (a string of up to 2048 printable characters)',
    );
  }
  return value;
}

function parseTicketType(value: unknown, appid: string): TicketType {
  if (weComApp(appid)) {
    if (value !== 'jsapi' && value !== 'agent_config') {
      throw new ServiceError(
        'invalid_request',
        'type must be "jsapi" (the corp\'s ticket for wx.config) or "agent_config" (the app\'s ticket for wx.agentConfig) for a WeCom app',
      );
    }
    return value;
  }
  if (value !== 'jsapi' && value !== 'wx_card') {
    throw new ServiceError('invalid_request', 'type must be "jsapi" (JS-SDK) or "wx_card" (card api_ticket)');
  }
  return value;
}

function parseAgentConfig(value: unknown, appid: string): boolean {
  if (value === undefined || value === false) return false;
  if (value !== true) throw new ServiceError('invalid_request', 'agent_config must be true or false');
  if (!weComApp(appid)) {
    throw new ServiceError(
      'invalid_request',
      'agent_config is for WeCom apps ("corpid:agentid"): wx.agentConfig does not exist for a WeChat appid',
    );
  }
  return true;
}

/** The token body: WeChat's own shape plus an absolute expiry. */
export interface TokenBody {
  access_token: string;
  expires_in: number;
  expires_at: number;
}
export interface TicketBody {
  ticket: string;
  expires_in: number;
  expires_at: number;
}
export interface JssdkConfigBody {
  /** The WeChat appid, or a WeCom app's corpid (what wx.config takes as appId). */
  appId: string;
  timestamp: number;
  nonceStr: string;
  signature: string;
}
/** A signed `wx.agentConfig` of a WeCom app. */
export interface AgentConfigBody {
  corpid: string;
  agentid: string;
  timestamp: number;
  nonceStr: string;
  signature: string;
}

export interface OperationResult {
  body: TokenBody | TicketBody | JssdkConfigBody | AgentConfigBody;
  served: Served;
}

/**
 * Throws `unknown_appid` when the credentials no longer list `appid` (an app removed from the
 * secret), checked whenever the parsed secret is held in memory: the check then costs nothing, or
 * one read of the secret per SECRET_CACHE_SECONDS (and a failed read falls back to the copy held).
 *
 * Before this instance's first read of the secret nothing is checked, so that a cache hit on a fresh
 * instance never loads the AWS SDK (tens of milliseconds). Such an instance may still serve a removed
 * app's token from Memcached, for at most that record's remaining life: a refresh needs the secret,
 * which answers `unknown_appid`. The first request that needs the secret (any HTTP request, a
 * refresh, the schedule) turns the check on.
 */
export async function requireConfigured(secrets: SecretSource, appid: string): Promise<void> {
  if (secrets.held && secrets.held() === undefined) return;
  let credentials: Credentials;
  try {
    credentials = await secrets.get();
  } catch (err) {
    const held = secrets.held?.();
    if (!held) throw err;
    credentials = held;
  }
  if (!credentials.apps.has(appid)) throw unknownAppid(appid);
}

/** Runs one validated operation against the service. */
export async function runOperation(
  service: TokenService,
  request: Request,
  ctx: CallContext,
  clock: Pick<Clock, 'now'>,
): Promise<OperationResult> {
  switch (request.operation) {
    case 'get_token': {
      const served = await service.getAccessToken(request.appid, ctx);
      return { body: tokenBody(served), served };
    }
    case 'refresh_token': {
      const served = await service.refreshAccessToken(request.appid, request.invalidToken, ctx);
      return { body: tokenBody(served), served };
    }
    case 'get_ticket': {
      const served = await service.getTicket(request.appid, request.type, ctx);
      return {
        body: { ticket: served.value, expires_in: served.expiresIn, expires_at: served.expiresAt },
        served,
      };
    }
    case 'jssdk_config': {
      // WeCom signs both configs as WeChat signs wx.config, each with its own ticket.
      const served = await service.getTicket(
        request.appid,
        request.agentConfig ? 'agent_config' : 'jsapi',
        ctx,
      );
      const timestamp = Math.floor(clock.now() / 1000);
      const nonceStr = newNonce();
      const signature = jsapiSignature(served.value, nonceStr, timestamp, request.url);
      const wecom = weComApp(request.appid);
      if (!wecom) return { body: { appId: request.appid, timestamp, nonceStr, signature }, served };
      const body = request.agentConfig
        ? { corpid: wecom.corpid, agentid: wecom.agentid, timestamp, nonceStr, signature }
        : { appId: wecom.corpid, timestamp, nonceStr, signature };
      return { body, served };
    }
  }
}

function tokenBody(served: Served): TokenBody {
  return { access_token: served.value, expires_in: served.expiresIn, expires_at: served.expiresAt };
}
