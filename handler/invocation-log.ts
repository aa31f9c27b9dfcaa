/**
 * The one line every invocation writes: the access log and its metrics (EMF) at once — what was
 * asked, the answer's code and status, where the value came from, a fingerprint of the value (never
 * the value), and how long it took.
 */
import type { Served } from '../lib/domain.ts';
import type { ServiceError } from '../lib/errors.ts';
import type { LogLevel } from '../lib/telemetry/events.ts';
import { fingerprint } from '../lib/telemetry/fingerprint.ts';
import type { EventLog, Metric } from '../lib/telemetry/log.ts';
import type { EventKind } from './classify.ts';

export interface InvocationOutcome {
  operation?: string | undefined;
  appid?: string | undefined;
  status?: number | undefined;
  served?: Served | undefined;
  error?: ServiceError | undefined;
  /** The answer's code when it is not an error (`ok`, or the schedule's `partial`). */
  code?: string;
  /** More metrics the line carries (the schedule's duration and counts). */
  metrics?: Metric[];
  /** More fields of the line (counts; never a token or a secret). */
  fields?: Record<string, number | string>;
}

/** Writes the invocation line; returns nothing, throws nothing. */
export function logInvocation(
  log: EventLog,
  channel: Exclude<EventKind, 'warmup'>,
  startedAtMs: number,
  outcome: InvocationOutcome,
): void {
  const { error, served } = outcome;
  const metrics: Metric[] = [...(outcome.metrics ?? [])];
  if (served) {
    metrics.push({ name: 'Served', value: 1, dimensions: { kind: served.kind, source: served.source } });
  }
  let level: LogLevel = 'INFO';
  if (error) {
    const server = error.status >= 500;
    metrics.push({ name: server ? 'ServerErrors' : 'ClientErrors', value: 1 });
    level = error.code === 'internal_error' ? 'ERROR' : server ? 'WARN' : 'INFO';
  }
  log.line(
    level,
    'invocation',
    {
      channel,
      operation: outcome.operation,
      appid: outcome.appid,
      code: error?.code ?? outcome.code ?? 'ok',
      status: outcome.status,
      source: served?.source,
      fingerprint: served ? fingerprint(served.value) : undefined,
      durationMs: Date.now() - startedAtMs,
      detail: error?.message,
      error: error?.code === 'internal_error' ? describeCause(error.cause) : undefined,
      ...outcome.fields,
    },
    metrics,
  );
}

/** An unexpected error for the log: its name, message and stack (a bug's; never a caller's input). */
function describeCause(cause: unknown): { name: string; message: string; stack?: string } {
  if (cause instanceof Error) {
    return { name: cause.name, message: cause.message, ...(cause.stack ? { stack: cause.stack } : {}) };
  }
  return { name: typeof cause, message: String(cause).slice(0, 200) };
}
