/** Which of the function's callers sent an event: decided by its shape alone. */

export type EventKind = 'warmup' | 'schedule' | 'http_v2' | 'http_v1' | 'invoke';

export function classifyEvent(event: unknown): EventKind {
  if (typeof event !== 'object' || event === null || Array.isArray(event)) return 'invoke';
  const e = event as Record<string, unknown>;
  if (e.source === 'serverless-plugin-warmup') return 'warmup';
  if (e.source === 'aws.events' && e['detail-type'] === 'Scheduled Event') return 'schedule';
  if (isHttpV2(e)) return 'http_v2';
  if (isHttpV1(e)) return 'http_v1';
  return 'invoke';
}

/** API Gateway HTTP API, payload format 2.0. */
function isHttpV2(event: Record<string, unknown>): boolean {
  const rc = event.requestContext as Record<string, unknown> | undefined;
  return event.version === '2.0' && typeof rc?.http === 'object' && rc.http !== null;
}

/** API Gateway REST API (or HTTP API with payload 1.0). */
function isHttpV1(event: Record<string, unknown>): boolean {
  return (
    typeof event.httpMethod === 'string' &&
    typeof event.requestContext === 'object' &&
    event.requestContext !== null
  );
}
