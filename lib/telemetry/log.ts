/**
 * Structured log lines that are CloudWatch metrics too. Each line is one JSON object on stdout with
 * `level`, `timestamp`, `service`, `event` (the closed vocabulary of events.ts) and the event's
 * fields; a line that counts something also carries an Embedded Metric Format block (`_aws`), which
 * CloudWatch turns into metrics without an API call. So an invocation costs one line: the access log
 * and its metrics at once.
 *
 * Written by hand rather than through a logging and a metrics library: the two lines those wrote per
 * invocation cost three quarters of a cache hit (bench/README.md), and EMF is a small, fixed format
 * (https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html).
 *
 * Nothing here ever receives a secret or a full token: tokens appear as fingerprints.
 */
import type { Telemetry } from '../ports.ts';
import { type CoreEvent, EVENT_LEVEL, type EventName, type LogLevel } from './events.ts';

export const SERVICE_NAME = 'wechat-token-service';
/** Must match serverless.yml (`custom.metricsNamespace`): the alarms read these metrics. */
export const METRICS_NAMESPACE = 'WeChatTokenService';

const RANK: Record<LogLevel, number> = { DEBUG: 10, INFO: 20, WARN: 30, ERROR: 40 };

/** One metric of a line: its value, unit and dimensions (besides `service`, which every metric has). */
export interface Metric {
  name: string;
  value: number;
  unit?: 'Count' | 'Milliseconds';
  dimensions?: Record<string, string>;
}

export interface EventLogOptions {
  level: LogLevel;
  /**
   * Where lines go; one call per line, at once. Default: stdout, each line built and written after
   * the answer (see below).
   */
  write?: (line: string) => void;
  now?: () => number;
}

/** The core's {@link Telemetry} port, and the writer of the handler's invocation line. */
export class EventLog implements Telemetry {
  readonly #minRank: number;
  /** Undefined: stdout, after the answer. */
  readonly #write: ((line: string) => void) | undefined;
  readonly #now: () => number;
  #requestId: string | undefined;

  constructor(options: EventLogOptions) {
    this.#minRank = RANK[options.level];
    this.#write = options.write;
    this.#now = options.now ?? Date.now;
  }

  /** The request every following line belongs to (the Lambda request id). */
  setRequestId(requestId: string | undefined): void {
    this.#requestId = requestId;
  }

  enabled(level: LogLevel): boolean {
    return RANK[level] >= this.#minRank;
  }

  emit(event: CoreEvent): void {
    const level = EVENT_LEVEL[event.event];
    const metrics = metricsOf(event);
    // A line that carries a metric is written at any level: metrics are not logs.
    if (metrics.length === 0 && !this.enabled(level)) return;
    this.line(level, event.event, event, metrics);
  }

  /**
   * Writes one line. `fields` must not contain `level`, `timestamp`, `service` or `event`, and must
   * not change after the call: a line bound for stdout is built after the answer.
   */
  line(level: LogLevel, event: EventName, fields: object, metrics: readonly Metric[] = []): void {
    const nowMs = this.#now();
    const requestId = this.#requestId;
    if (this.#write) this.#write(buildLine(nowMs, requestId, level, event, fields, metrics));
    else writeToStdoutSoon(() => buildLine(nowMs, requestId, level, event, fields, metrics));
  }
}

function buildLine(
  nowMs: number,
  requestId: string | undefined,
  level: LogLevel,
  event: EventName,
  fields: object,
  metrics: readonly Metric[],
): string {
  const out: Record<string, unknown> = {
    level,
    timestamp: new Date(nowMs).toISOString(),
    service: SERVICE_NAME,
    event,
    requestId,
    ...fields,
  };
  if (metrics.length > 0) {
    const directives = [];
    for (const metric of metrics) {
      const names = ['service'];
      if (metric.dimensions) {
        for (const name in metric.dimensions) {
          names.push(name);
          out[name] = metric.dimensions[name];
        }
      }
      out[metric.name] = metric.value;
      directives.push({
        Namespace: METRICS_NAMESPACE,
        Dimensions: [names],
        Metrics: [{ Name: metric.name, Unit: metric.unit ?? 'Count' }],
      });
    }
    out._aws = { Timestamp: nowMs, CloudWatchMetrics: directives };
  }
  return `${JSON.stringify(out)}\n`;
}

/**
 * Lines bound for stdout, built and written together once the current turn of the event loop is done:
 * after the handler has returned its answer. A write to the pipe Lambda reads stdout from is a system
 * call that wakes the reader; on a Memcached hit it was a third of the time a caller waited, and
 * building the line (its timestamp and JSON) a further tenth. In the check phase of the same loop
 * turn, the lines still go out before the runtime asks for the next event (and Lambda freezes the
 * process), and on exit.
 */
let pendingLines: Array<() => string> = [];
let flushScheduled = false;

function flushLines(): void {
  flushScheduled = false;
  if (pendingLines.length === 0) return;
  const lines = pendingLines;
  pendingLines = [];
  let text = '';
  for (const build of lines) text += build();
  process.stdout.write(text);
}

function writeToStdoutSoon(line: () => string): void {
  pendingLines.push(line);
  if (flushScheduled) return;
  flushScheduled = true;
  setImmediate(flushLines);
}

process.once('exit', flushLines);

function metricsOf(event: CoreEvent): Metric[] {
  switch (event.event) {
    case 'upstream.fetch':
      return [
        { name: 'UpstreamFetches', value: 1, dimensions: { upstream: event.upstream, reason: event.reason } },
      ];
    case 'upstream.error':
      return [
        {
          name: 'UpstreamErrors',
          value: 1,
          dimensions: {
            upstream: event.upstream,
            errcode: event.errcode === undefined ? event.code : String(event.errcode),
          },
        },
      ];
    case 'upstream.retry':
      return [{ name: 'UpstreamRetries', value: 1, dimensions: { upstream: event.upstream } }];
    case 'lock.wait':
      return [
        { name: 'LockWaits', value: 1, dimensions: { outcome: event.outcome } },
        {
          name: 'LockWaitTime',
          value: event.waitedMs,
          unit: 'Milliseconds',
          dimensions: { outcome: event.outcome },
        },
      ];
    case 'token.stale_served':
      return [{ name: 'StaleServed', value: 1, dimensions: { kind: event.kind } }];
    case 'cache.outage':
      return [{ name: 'CacheOutages', value: 1 }];
    case 'secrets.stale_served':
      return [{ name: 'SecretStaleServed', value: 1 }];
    case 'quota.probe':
      return [{ name: 'QuotaProbes', value: 1, dimensions: { upstream: event.upstream } }];
    case 'quota.cleared':
      return [{ name: 'QuotaResets', value: 1 }];
    case 'quota.checked': {
      const dimensions = { upstream: event.upstream };
      return [
        { name: 'QuotaUsed', value: event.used, dimensions },
        { name: 'QuotaLimit', value: event.limit, dimensions },
        { name: 'QuotaRemaining', value: event.remain, dimensions },
      ];
    }
    case 'quota.warning':
      return [{ name: 'QuotaWarnings', value: 1, dimensions: { upstream: event.upstream } }];
    case 'quota.outside_fetcher':
      return [{ name: 'OutsideFetcherSuspected', value: 1 }];
    default:
      return [];
  }
}

/**
 * The one line written when the configuration is invalid: there is no EventLog then (its level is
 * configuration too). It names variables only, never a value of a secret.
 */
export function writeConfigInvalid(
  code: string,
  detail: string,
  requestId?: string,
  write = (line: string) => process.stderr.write(line),
): void {
  write(
    `${JSON.stringify({ level: 'ERROR', timestamp: new Date().toISOString(), service: SERVICE_NAME, event: 'config.invalid', requestId, code, detail })}\n`,
  );
}
