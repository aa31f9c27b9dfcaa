/** EventBridge schedule: proactive refresh of every configured app, so user traffic rarely waits on WeChat. */
import { type CallContext, type TokenKind, ticketKind } from '../lib/domain.ts';
import { toServiceError } from '../lib/errors.ts';
import type { ScheduledOutcome } from '../lib/token/service.ts';
import type { Container } from './container.ts';
import { logInvocation } from './invocation-log.ts';

export interface ScheduleSummary {
  apps: number;
  refreshed: Array<{ appid: string; kind: TokenKind }>;
  fresh: number;
  in_progress: number;
  served_stale: Array<{ appid: string; kind: TokenKind }>;
  failed: Array<{ appid: string; kind: TokenKind; code: string; message: string }>;
  /** Not reached before the invocation's deadline. */
  skipped: number;
}

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
    });
    return summary;
  } catch (err) {
    const error = toServiceError(err);
    logInvocation(container.log, 'schedule', startedAtMs, { operation: 'schedule', error });
    return error.toBody();
  }
}

/** Refreshes whatever is missing or inside its refresh window; leaves fresh records alone. */
async function refreshDue(container: Container, ctx: CallContext): Promise<ScheduleSummary> {
  const credentials = await container.secrets.get();
  const work: Array<{ appid: string; kind: TokenKind }> = [];
  for (const app of credentials.apps.values()) {
    work.push({ appid: app.appid, kind: 'access_token' });
    for (const type of app.tickets) work.push({ appid: app.appid, kind: ticketKind(type) });
  }
  const summary: ScheduleSummary = {
    apps: credentials.apps.size,
    refreshed: [],
    fresh: 0,
    in_progress: 0,
    served_stale: [],
    failed: [],
    skipped: 0,
  };
  for (const item of work) {
    if (container.clock.now() >= ctx.deadlineAtMs) {
      summary.skipped++;
      continue;
    }
    let outcome: ScheduledOutcome;
    try {
      outcome = await container.service.refreshIfDue(item.appid, item.kind, ctx);
    } catch (err) {
      const error = toServiceError(err);
      summary.failed.push({ ...item, code: error.code, message: error.message });
      continue;
    }
    if (outcome === 'refreshed') summary.refreshed.push(item);
    else if (outcome === 'served_stale') summary.served_stale.push(item);
    else if (outcome === 'fresh') summary.fresh++;
    else summary.in_progress++;
  }
  return summary;
}
