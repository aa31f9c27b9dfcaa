/**
 * Direct invoke (another Lambda, authorised by IAM): the event is the request, the result is the body
 * itself — a token, ticket or wx.config body, or `{error}`; never a thrown error.
 */
import type { CallContext } from '../lib/domain.ts';
import { ServiceError, toServiceError } from '../lib/errors.ts';
import type { Container } from './container.ts';
import { logInvocation } from './invocation-log.ts';
import {
  OPERATIONS,
  type Operation,
  parseRequest,
  type Request,
  requireConfigured,
  runOperation,
} from './operations.ts';

export async function handleInvoke(
  event: unknown,
  container: Container,
  ctx: CallContext,
  startedAtMs: number,
): Promise<unknown> {
  let request: Request | undefined;
  try {
    request = parseInvoke(event);
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

/** `{action?, …fields}`: the action defaults to get_token. Throws `invalid_request`. */
function parseInvoke(event: unknown): Request {
  if (typeof event !== 'object' || event === null || Array.isArray(event)) {
    throw new ServiceError('invalid_request', 'the event must be a JSON object such as {"appid":"wx…"}');
  }
  const fields = event as Record<string, unknown>;
  const action = fields.action ?? 'get_token';
  if (typeof action !== 'string' || !(OPERATIONS as readonly string[]).includes(action)) {
    throw new ServiceError(
      'invalid_request',
      `action must be one of ${OPERATIONS.join(', ')} (default get_token)`,
    );
  }
  return parseRequest(action as Operation, fields);
}
