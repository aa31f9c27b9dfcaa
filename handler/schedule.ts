/**
 * EventBridge schedule: proactive refresh of every configured app, so user traffic rarely waits on
 * WeChat, then the quota checks that are due.
 *
 * Many apps: the due (app, kind) pairs are refreshed closest to expiry first (missing records
 * first), SCHEDULE_CONCURRENCY at a time, each within its own share of the run's time
 * (lib/bounded.ts), so one failing or slow app never delays the others. What does not fit is
 * `skipped` and picked up by the next run (it is still due then). The summary lists every pair by
 * outcome code.
 */

import { runBounded } from '../lib/bounded.ts';
import { type CallContext, type TokenKind, ticketKind } from '../lib/domain.ts';
import { toServiceError } from '../lib/errors.ts';
import type { Metric } from '../lib/telemetry/log.ts';
import type { ScheduledOutcome } from '../lib/token/service.ts';
import type { Container } from './container.ts';
import { logInvocation } from './invocation-log.ts';

export interface ScheduleSummary {
  apps: number;
  /** (app, kind) pairs refreshed at once (SCHEDULE_CONCURRENCY). */
  concurrency: number;
  refreshed: Array<{ appid: string; kind: TokenKind }>;
  fresh: number;
  in_progress: number;
  served_stale: Array<{ appid: string; kind: TokenKind }>;
  failed: Array<{ appid: string; kind: TokenKind; code: string; message: string }>;
  /** Not reached before the invocation's deadline: the next run picks them up. */
  skipped: number;
  /**
   * Every pair by outcome: `refreshed`, `fresh`, `in_progress`, `served_stale`, `skipped`, or the
   * error code it failed with. A pair is `wx…` for the access token, `wx…/jsapi_ticket` for a ticket.
   */
  by_code: Record<string, string[]>;
  /** getApiQuota checks this run made (at most one per app per QUOTA_CHECK_INTERVAL_SECONDS, fleet-wide). */
  quota_checked: number;
  /** Apps whose WeChat count of token calls exceeds the service's own: another fetcher exists. */
  outside_fetcher_suspected: string[];
  duration_ms: number;
}

/** A refresh is started only with this much of the run's time left; later ones are skipped. */
const MIN_START_MS = 500;

/** The schedule's answer: the summary, or `{error}` when not even the list of apps could be read. */
export async function handleSchedule(
  container: Container,
  ctx: CallContext,
  startedAtMs: number,
): Promise<unknown> {
  try {
    const summary = await refreshDue(container, ctx);
    logInvocation(container.log, 'schedule', startedAtMs, {
      operation: 'schedule',
      code: summary.failed.length === 0 ? 'ok' : 'partial',
      metrics: scheduleMetrics(summary),
      fields: {
        apps: summary.apps,
        refreshed: summary.refreshed.length,
        failed: summary.failed.length,
        skipped: summary.skipped,
        quotaChecked: summary.quota_checked,
      },
    });
    return summary;
  } catch (err) {
    const error = toServiceError(err);
    logInvocation(container.log, 'schedule', startedAtMs, { operation: 'schedule', error });
    return error.toBody();
  }
}

/** The metrics of a run, on its invocation line: the dashboard's schedule widget and the skipped alarm. */
export function scheduleMetrics(
  summary: Pick<ScheduleSummary, 'duration_ms' | 'refreshed' | 'failed' | 'skipped'>,
): Metric[] {
  return [
    { name: 'ScheduleDuration', value: summary.duration_ms, unit: 'Milliseconds' },
    { name: 'ScheduleRefreshed', value: summary.refreshed.length },
    { name: 'ScheduleFailed', value: summary.failed.length },
    { name: 'ScheduleSkipped', value: summary.skipped },
  ];
}

interface Item {
  appid: string;
  kind: TokenKind;
  /** When its record expires (epoch ms); -Infinity when it has none (or the cache could not say). */
  expiresAtMs: number;
  /** Whether it needs a refresh now: missing, inside its refresh window, or expired. */
  due: boolean;
}

const kindOrder = (kind: TokenKind) => (kind === 'access_token' ? 0 : 1);

/** Refreshes whatever is missing or inside its refresh window; leaves fresh records alone. */
async function refreshDue(container: Container, ctx: CallContext): Promise<ScheduleSummary> {
  const { clock, service, config } = container;
  const runStartedAtMs = clock.now();
  const credentials = await container.secrets.get();
  const pairs: Array<{ appid: string; kind: TokenKind }> = [];
  for (const app of credentials.apps.values()) {
    pairs.push({ appid: app.appid, kind: 'access_token' });
    for (const type of app.tickets) pairs.push({ appid: app.appid, kind: ticketKind(type) });
  }
  const concurrency = config.scheduleConcurrency;
  // A refresh gets at least one WeChat attempt's time (while the run has it): a slow app is cut at
  // its share, not a normal answer of a busy WeChat.
  const bounded = {
    concurrency,
    shareFloorMs: config.upstreamTimeoutMs,
    minStartMs: MIN_START_MS,
    now: () => clock.now(),
  };
  // Which pairs are due, and how close each is to expiry: one cache read each.
  const now = clock.now();
  const read = await runBounded(
    pairs,
    { ...bounded, deadlineAtMs: ctx.deadlineAtMs, minStartMs: 0 },
    (pair) => service.record(pair.appid, pair.kind),
  );
  const items: Item[] = read.map((r) => {
    const record = r.outcome === 'done' ? r.value : null;
    return {
      ...r.item,
      expiresAtMs: record?.expiresAtMs ?? Number.NEGATIVE_INFINITY,
      due: !record || now >= record.refreshAtMs || now >= record.expiresAtMs,
    };
  });
  const summary: ScheduleSummary = {
    apps: credentials.apps.size,
    concurrency,
    refreshed: [],
    fresh: 0,
    in_progress: 0,
    served_stale: [],
    failed: [],
    skipped: 0,
    by_code: {},
    quota_checked: 0,
    outside_fetcher_suspected: [],
    duration_ms: 0,
  };
  const note = (code: string, item: { appid: string; kind: TokenKind }) => {
    summary.by_code[code] ??= [];
    summary.by_code[code].push(item.kind === 'access_token' ? item.appid : `${item.appid}/${item.kind}`);
  };
  for (const item of items) {
    if (item.due) continue;
    summary.fresh++;
    note('fresh', item);
  }
  // Closest to expiry first (missing first); at a tie an app's token before its tickets, which need it.
  const due = items
    .filter((i) => i.due)
    .sort((a, b) => a.expiresAtMs - b.expiresAtMs || kindOrder(a.kind) - kindOrder(b.kind));
  const outcomes = await runBounded<Item, ScheduledOutcome>(
    due,
    { ...bounded, deadlineAtMs: ctx.deadlineAtMs },
    (item, deadlineAtMs) => service.refreshIfDue(item.appid, item.kind, { deadlineAtMs }),
  );
  for (const result of outcomes) {
    const item = { appid: result.item.appid, kind: result.item.kind };
    if (result.outcome === 'skipped') {
      summary.skipped++;
      note('skipped', item);
    } else if (result.outcome === 'failed') {
      const error = toServiceError(result.error);
      summary.failed.push({ ...item, code: error.code, message: error.message });
      note(error.code, item);
    } else {
      note(result.value, item);
      if (result.value === 'refreshed') summary.refreshed.push(item);
      else if (result.value === 'served_stale') summary.served_stale.push(item);
      else if (result.value === 'fresh') summary.fresh++;
      else summary.in_progress++;
    }
  }
  if (config.quotaCheckIntervalSeconds > 0) {
    const checks = await runBounded(
      [...credentials.apps.keys()],
      { ...bounded, deadlineAtMs: ctx.deadlineAtMs },
      (appid, deadlineAtMs) => service.quota.checkIfDue(appid, { deadlineAtMs }),
    );
    for (const check of checks) {
      if (check.outcome !== 'done' || check.value === null) continue;
      summary.quota_checked++;
      if (check.value.outsideFetcherSuspected) summary.outside_fetcher_suspected.push(check.value.appid);
    }
  }
  summary.duration_ms = clock.now() - runStartedAtMs;
  return summary;
}
