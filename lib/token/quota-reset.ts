/**
 * The `clear_quota` operator action: WeChat's `POST /cgi-bin/clear_quota/v2` for one app, then every
 * quota breaker of that app closes, fleet-wide (upstream-guard.ts). WeChat allows 10 resets per
 * account per month, shared with the reset in its console; errcode 48006 says they are used up.
 */
import type { CallContext } from '../domain.ts';
import { ServiceError } from '../errors.ts';
import type { SecretSource, Telemetry, WeChatApi } from '../ports.ts';
import { requireCredentials } from '../secrets/credentials.ts';
import type { UpstreamName } from './record.ts';
import type { UpstreamGuard } from './upstream-guard.ts';

/** WeChat's budget of quota resets per account per month (clear_quota and the console together). */
export const QUOTA_RESETS_PER_MONTH = 10;

export interface QuotaResetResult {
  appid: string;
  /** The upstreams whose quota breaker was open and is now closed. */
  breakersClosed: UpstreamName[];
}

/**
 * Resets `appid`'s daily quotas at WeChat and closes its breakers. Errors: unknown_appid,
 * wechat_rejected (48006: the month's resets are used up), wechat_credentials_rejected,
 * wechat_ip_not_whitelisted, wechat_unavailable/wechat_timeout (a timed-out reset is not repeated:
 * it may have used one of the month's resets), secrets_*; invalid_request for a WeCom app, which has
 * no quota reset.
 */
export async function resetQuota(
  deps: { secrets: SecretSource; wechat: WeChatApi; guard: UpstreamGuard; telemetry: Telemetry },
  appid: string,
  ctx: CallContext,
): Promise<QuotaResetResult> {
  const app = await requireCredentials(deps.secrets, appid);
  if (app.tokenApi === 'wecom') {
    throw new ServiceError(
      'invalid_request',
      `clear_quota resets a WeChat app's daily quotas; ${appid} is a WeCom app, whose frequency limits lift by themselves after the minute or hour WeCom blocks`,
    );
  }
  await deps.wechat.clearQuota(app, { deadlineAtMs: ctx.deadlineAtMs });
  deps.telemetry.emit({ event: 'quota.cleared', appid });
  return { appid, breakersClosed: await deps.guard.closeQuotaBreakers(appid) };
}
