/**
 * Direct invoke (another Lambda, or an operator, authorised by IAM): the event is the request, the
 * result is the body itself — a token, ticket or wx.config body, an operator action's answer, or
 * `{error}`; never a thrown error.
 *
 * Operator actions (`clear_quota`, `status`) exist on this channel only: API Gateway has no route to them.
 */
import type { CallContext } from '../lib/domain.ts';
import { ServiceError, toServiceError } from '../lib/errors.ts';
import { QUOTA_RESETS_PER_MONTH } from '../lib/token/quota-reset.ts';
import type { Container } from './container.ts';
import { logInvocation } from './invocation-log.ts';
import {
  OPERATIONS,
  type Operation,
  parseAppid,
  parseRequest,
  type Request,
  requireConfigured,
  runOperation,
} from './operations.ts';
import { parseStatus, type StatusRequest, status } from './status.ts';

/** Actions for operators, besides the operations every channel offers. */
export const OPERATOR_ACTIONS = ['clear_quota', 'status'] as const;

type InvokeRequest = Request | { operation: 'clear_quota'; appid: string } | StatusRequest;

/** The answer of `clear_quota`. */
export interface ClearQuotaBody {
  appid: string;
  cleared: true;
  /** The quota breakers that were open and are now closed: token, stable_token, ticket_jsapi, ticket_wx_card. */
  breakers_closed: string[];
  resets_per_month: number;
  note: string;
}

export async function handleInvoke(
  event: unknown,
  container: Container,
  ctx: CallContext,
  startedAtMs: number,
): Promise<unknown> {
  let request: InvokeRequest | undefined;
  try {
    request = parseInvoke(event);
    if (request.operation === 'status') {
      const body = await status(container, request, ctx);
      logInvocation(container.log, 'invoke', startedAtMs, {
        operation: request.operation,
        appid: request.appid,
        fields: { apps: body.apps.length, skipped: body.skipped.length },
      });
      return body;
    }
    if (request.operation === 'clear_quota') {
      const body = await clearQuota(container, request.appid, ctx);
      logInvocation(container.log, 'invoke', startedAtMs, {
        operation: request.operation,
        appid: request.appid,
      });
      return body;
    }
    await requireConfigured(container.secrets, request.appid);
    const result = await runOperation(container.service, request, ctx, container.clock);
    logInvocation(container.log, 'invoke', startedAtMs, {
      operation: request.operation,
      appid: request.appid,
      served: result.served,
    });
    return result.body;
  } catch (err) {
    const error = toServiceError(err);
    logInvocation(container.log, 'invoke', startedAtMs, {
      operation: request?.operation,
      appid: request?.appid,
      error,
    });
    return error.toBody();
  }
}

/**
 * `clear_quota {appid}`: WeChat's clear_quota/v2, which uses one of the account's 10 quota resets a
 * month (shared with the WeChat console; errcode 48006, `wechat_rejected`, when they are used up),
 * then every quota breaker of the app closes.
 */
async function clearQuota(container: Container, appid: string, ctx: CallContext): Promise<ClearQuotaBody> {
  const result = await container.service.clearQuota(appid, ctx);
  return {
    appid,
    cleared: true,
    breakers_closed: result.breakersClosed,
    resets_per_month: QUOTA_RESETS_PER_MONTH,
    note:
      `WeChat allows ${QUOTA_RESETS_PER_MONTH} quota resets per account per month, shared with the reset in its ` +
      'console; this used one. When they are used up WeChat answers errcode 48006 until the month ends.',
  };
}

/** `{action?, …fields}`: the action defaults to get_token. Throws `invalid_request`. */
function parseInvoke(event: unknown): InvokeRequest {
  if (typeof event !== 'object' || event === null || Array.isArray(event)) {
    throw new ServiceError('invalid_request', 'the event must be a JSON object such as {"appid":"wx…"}');
  }
  const fields = event as Record<string, unknown>;
  const action = fields.action ?? 'get_token';
  if (action === 'clear_quota') return { operation: action, appid: parseAppid(fields.appid) };
  if (action === 'status') return parseStatus(fields);
  if (typeof action !== 'string' || !(OPERATIONS as readonly string[]).includes(action)) {
    throw new ServiceError(
      'invalid_request',
      `action must be one of ${[...OPERATIONS, ...OPERATOR_ACTIONS].join(', ')} (default get_token)`,
    );
  }
  return parseRequest(action as Operation, fields);
}
