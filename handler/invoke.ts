/** Direct invoke (another Lambda): the event is the request, the result is the body itself. */
import { ServiceError } from '../lib/errors.ts';
import type { CallContext } from '../lib/token/service.ts';
import type { Container } from './container.ts';
import { OPERATIONS, type Operation, parseRequest } from './input.ts';
import { type OperationResult, runOperation } from './operations.ts';

export async function handleInvoke(
  event: Record<string, unknown>,
  container: Container,
  ctx: CallContext,
): Promise<OperationResult> {
  const action = event.action ?? 'get_token';
  if (typeof action !== 'string' || !(OPERATIONS as readonly string[]).includes(action)) {
    throw new ServiceError(
      'invalid_request',
      `action must be one of ${OPERATIONS.join(', ')} (default get_token)`,
    );
  }
  const request = parseRequest(action as Operation, event);
  return runOperation(container.service, request, ctx, () => container.clock.now());
}
