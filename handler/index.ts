/**
 * The Lambda entry: classifies the event, dispatches it, and turns every outcome into the body of
 * its channel. Expected failures never throw: direct invoke gets `{error}`, HTTP gets a status and
 * `{error}`, the schedule gets a summary. Dependencies are built on the first invocation that needs
 * them (importing this module does no I/O) and reused by every later invocation of the container.
 */
import { APPID_PATTERN } from '../lib/config.ts';
import { ServiceError, toServiceError } from '../lib/errors.ts';
import type { Source } from '../lib/telemetry.ts';
import type { CallContext } from '../lib/token/service.ts';
import { buildContainer, type Container, type HandlerOptions } from './container.ts';
import { type HttpOutcome, handleHttp, isHttpV1, isHttpV2, json, toHttpRequest } from './http.ts';
import { handleInvoke } from './invoke.ts';
import { fingerprint } from './observe.ts';
import { handleSchedule } from './schedule.ts';

export type { HandlerOptions } from './container.ts';

/** The subset of the Lambda context used: the remaining time bounds every wait. */
export interface LambdaContextLike {
  getRemainingTimeInMillis?: () => number;
  awsRequestId?: string;
}

export type EventKind = 'warmup' | 'schedule' | 'http_v2' | 'http_v1' | 'invoke';

/** Without a Lambda context (a plain harness), an invocation may take this long. */
const DEFAULT_REMAINING_MS = 30_000;

export function classifyEvent(event: unknown): EventKind {
  if (typeof event !== 'object' || event === null || Array.isArray(event)) return 'invoke';
  const e = event as Record<string, unknown>;
  if (e.source === 'serverless-plugin-warmup') return 'warmup';
  if (e.source === 'aws.events' && e['detail-type'] === 'Scheduled Event') return 'schedule';
  if (isHttpV2(e)) return 'http_v2';
  if (isHttpV1(e)) return 'http_v1';
  return 'invoke';
}

/** Builds a handler with its own container: tests use several, as Lambda runs several instances. */
export function createHandler(options: HandlerOptions = {}) {
  let container: Container | undefined;

  return async function handler(event: unknown, context?: LambdaContextLike): Promise<unknown> {
    const kind = classifyEvent(event);
    if (kind === 'warmup') return { warmed: true };
    const startedAtMs = Date.now();
    try {
      container ??= buildContainer(options);
    } catch (err) {
      const error = toServiceError(err);
      // No logger without a configuration: the one line goes to stderr, without secrets (it names variables only).
      process.stderr.write(
        `${JSON.stringify({ level: 'ERROR', message: 'configuration invalid', code: error.code, detail: error.message })}\n`,
      );
      return kind === 'http_v1' || kind === 'http_v2' ? json(error.status, error.toBody()) : error.toBody();
    }
    const c = container;
    const remainingMs = context?.getRemainingTimeInMillis?.() ?? DEFAULT_REMAINING_MS;
    const ctx: CallContext = { deadlineAtMs: c.clock.now() + remainingMs - c.config.deadlineMarginMs };
    const { logger, metrics } = c.observability;
    if (context?.awsRequestId) logger.appendKeys({ requestId: context.awsRequestId });

    const log = (fields: {
      code: string;
      source?: Source;
      appid?: string;
      operation?: string;
      status?: number;
      value?: string;
      error?: ServiceError;
    }) => {
      const line = {
        event: kind,
        operation: fields.operation,
        appid: fields.appid,
        code: fields.code,
        status: fields.status,
        source: fields.source,
        fingerprint: fields.value === undefined ? undefined : fingerprint(fields.value),
        durationMs: Date.now() - startedAtMs,
      };
      if (fields.error?.code === 'internal_error')
        logger.error('invocation failed', { ...line, error: fields.error.cause as Error });
      else if (fields.error && fields.error.status >= 500)
        logger.warn('invocation failed', { ...line, detail: fields.error.message });
      else logger.info('invocation', fields.error ? { ...line, detail: fields.error.message } : line);
      if (fields.source) {
        metrics.addDimension('source', fields.source);
        metrics.addMetric('Served', 'Count', 1);
      }
      if (fields.error)
        metrics.addMetric(fields.error.status >= 500 ? 'ServerErrors' : 'ClientErrors', 'Count', 1);
      if (fields.source || fields.error) metrics.publishStoredMetrics();
    };

    if (kind === 'schedule') {
      try {
        const summary = await handleSchedule(c, ctx);
        log({ code: summary.failed.length === 0 ? 'ok' : 'partial', operation: 'schedule' });
        return summary;
      } catch (err) {
        const error = toServiceError(err);
        log({ code: error.code, operation: 'schedule', error });
        return error.toBody();
      }
    }

    if (kind === 'http_v1' || kind === 'http_v2') {
      let outcome: HttpOutcome | undefined;
      try {
        outcome = await handleHttp(
          toHttpRequest(event as Record<string, unknown>, kind === 'http_v1' ? 1 : 2),
          c,
          ctx,
        );
        log({
          code: 'ok',
          operation: outcome.route,
          status: outcome.result.statusCode,
          ...(outcome.appid ? { appid: outcome.appid } : {}),
          ...(outcome.operation
            ? { source: outcome.operation.served.source, value: outcome.operation.served.value }
            : {}),
        });
        return outcome.result;
      } catch (err) {
        const error = toServiceError(err);
        log({ code: error.code, status: error.status, error });
        return json(error.status, error.toBody());
      }
    }

    const fields = event as Record<string, unknown>;
    const appid =
      typeof fields?.appid === 'string' && APPID_PATTERN.test(fields.appid) ? fields.appid : undefined;
    const operation =
      typeof fields?.action === 'string' && /^[a-z_]{1,32}$/.test(fields.action)
        ? fields.action
        : 'get_token';
    try {
      if (typeof event !== 'object' || event === null || Array.isArray(event)) {
        throw new ServiceError('invalid_request', 'the event must be a JSON object such as {"appid":"wx…"}');
      }
      const result = await handleInvoke(fields, c, ctx);
      log({
        code: 'ok',
        operation,
        source: result.served.source,
        value: result.served.value,
        ...(appid ? { appid } : {}),
      });
      return result.body;
    } catch (err) {
      const error = toServiceError(err);
      log({ code: error.code, operation, error, ...(appid ? { appid } : {}) });
      return error.toBody();
    }
  };
}

/** The Lambda handler: `handler(event, context)`, configured from the environment. */
export const handler = createHandler();
