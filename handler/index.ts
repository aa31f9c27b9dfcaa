/**
 * The Lambda entry: classify the event, dispatch it to its channel, answer. Expected failures never
 * throw: direct invoke gets `{error}`, HTTP gets a status and `{error}`, the schedule gets a summary.
 * Each channel writes the invocation's one log line (invocation-log.ts).
 */
import { type ErrorBody, toServiceError } from '../lib/errors.ts';
import { writeConfigInvalid } from '../lib/telemetry/log.ts';
import { handleApiGateway, json, type ProxyResult, unauthenticatedBody } from './api-gateway.ts';
import { classifyEvent } from './classify.ts';
import { buildContainer, type Container, type ContainerOverrides } from './container.ts';
import { handleInvoke } from './invoke.ts';
import { handleSchedule } from './schedule.ts';

export type { ContainerOverrides } from './container.ts';

/** The subset of the Lambda context used: the remaining time bounds every wait. */
export interface LambdaContextLike {
  getRemainingTimeInMillis?: () => number;
  awsRequestId?: string;
}

/** Without a Lambda context (a plain harness), an invocation may take this long. */
const DEFAULT_REMAINING_MS = 30_000;

/** Builds a handler with its own container: tests use several, as Lambda runs several instances. */
export function createHandler(overrides: ContainerOverrides = {}) {
  let container: Container | undefined;

  return async function handler(event: unknown, context?: LambdaContextLike): Promise<unknown> {
    const kind = classifyEvent(event);
    if (kind === 'warmup') return { warmed: true };
    const startedAtMs = Date.now();
    try {
      container ??= buildContainer(overrides);
    } catch (err) {
      return configurationInvalid(err, kind === 'http_v1' || kind === 'http_v2', context?.awsRequestId);
    }
    const c = container;
    const remainingMs = context?.getRemainingTimeInMillis?.() ?? DEFAULT_REMAINING_MS;
    const ctx = { deadlineAtMs: c.clock.now() + remainingMs - c.config.deadlineMarginMs };
    c.log.setRequestId(context?.awsRequestId);
    // Cache calls may use the margin: a lock holder's write and release after a slow WeChat call
    // must not be skipped (an orphaned lock stalls every peer for a lease), and still end in time.
    c.store.bound?.(ctx.deadlineAtMs + c.config.deadlineMarginMs / 2);
    switch (kind) {
      case 'schedule':
        return handleSchedule(c, ctx, startedAtMs);
      case 'http_v1':
      case 'http_v2':
        return handleApiGateway(
          event as Record<string, unknown>,
          kind === 'http_v1' ? 1 : 2,
          c,
          ctx,
          startedAtMs,
          context?.awsRequestId,
        );
      case 'invoke':
        return handleInvoke(event, c, ctx, startedAtMs);
    }
  };
}

/**
 * No container, so no log level: one line to stderr (it names variables, never a secret), and the
 * error — in full to direct invoke, generic to HTTP callers, none of whom could be authenticated.
 */
function configurationInvalid(
  err: unknown,
  http: boolean,
  requestId: string | undefined,
): ErrorBody | ProxyResult {
  const error = toServiceError(err);
  writeConfigInvalid(error.code, error.message, requestId);
  return http ? json(error.status, unauthenticatedBody(error, requestId)) : error.toBody();
}

/** The Lambda handler: `handler(event, context)`, configured from the environment. */
export const handler = createHandler();
