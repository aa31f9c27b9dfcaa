import { createHash } from 'node:crypto';
import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import type { Telemetry } from '../lib/telemetry.ts';

export interface Observability {
  logger: Logger;
  metrics: Metrics;
  telemetry: Telemetry;
}

const NAMESPACE = 'WeChatTokenService';

/**
 * Structured logs (Powertools Logger, JSON on stdout) and CloudWatch metrics (Powertools Metrics,
 * EMF). Nothing here ever receives a secret or a full token: tokens appear as {@link fingerprint}s.
 */
export function createObservability(logLevel: string): Observability {
  const logger = new Logger({ serviceName: 'wechat-token-service', logLevel: logLevel as 'INFO' });
  const metrics = new Metrics({ namespace: NAMESPACE, serviceName: 'wechat-token-service' });
  const single = (
    name: string,
    dimensions: Record<string, string>,
    unit: (typeof MetricUnit)[keyof typeof MetricUnit] = MetricUnit.Count,
    value = 1,
  ) => {
    const metric = metrics.singleMetric();
    for (const [key, val] of Object.entries(dimensions)) metric.addDimension(key, val);
    metric.addMetric(name, unit, value);
  };
  const telemetry: Telemetry = {
    upstreamCall(upstream, appid, reason) {
      logger.info('calling WeChat', { upstream, appid, reason });
      single('UpstreamFetches', { upstream, reason });
    },
    upstreamError(upstream, appid, code, errcode) {
      logger.warn('WeChat call failed', { upstream, appid, code, errcode });
      single('UpstreamErrors', { upstream, errcode: errcode === undefined ? code : String(errcode) });
    },
    upstreamRetry(upstream, reason, attempt) {
      logger.info('retrying WeChat call', { upstream, reason, attempt });
      single('UpstreamRetries', { upstream });
    },
    lockWait(kind, appid, waitedMs, outcome) {
      logger.warn('waited for a peer instance holding the refresh lock', { kind, appid, waitedMs, outcome });
      single('LockWaits', { outcome });
      single('LockWaitTime', { outcome }, MetricUnit.Milliseconds, waitedMs);
    },
    staleServed(kind, appid, reason) {
      logger.warn('serving the last valid value because a refresh could not be done', {
        kind,
        appid,
        reason,
      });
      single('StaleServed', { kind });
    },
    warn(message, attributes) {
      logger.warn(message, attributes);
    },
  };
  return { logger, metrics, telemetry };
}

/** A short, non-reversible identifier of a token or ticket for logs: the first 10 hex of its SHA-256. */
export function fingerprint(value: string): string {
  return createHash('sha256').update(value).digest('hex').slice(0, 10);
}
