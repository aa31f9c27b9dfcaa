/**
 * What the SDK adapters share: the AppSecret they hand their SDK, and the expiry they put on the
 * token objects SDKs expect.
 */
import type { TokenClient } from './token-client.ts';

/**
 * The AppSecret each adapter gives its SDK. The adapters never let an SDK reach WeChat's token
 * endpoints; were one to try, WeChat would refuse this value (errcode 40001/40125) instead of
 * issuing a token that kills the service's.
 */
export const NOT_A_SECRET = 'wechat-token-service:the-service-holds-the-secret';

/**
 * How long an SDK is told a token it was just handed stays valid, when the client does not keep it
 * (a token promised for 0 s). The SDKs wired here ask their hook again for every API call, so this
 * only has to outlast the SDK's own validity check right after the hook answers.
 */
const HANDED_OUT_FOR_MS = 1_000;

/** Epoch ms until which an SDK may consider `token` valid: the client's own bound. */
export function sdkExpireTime(client: TokenClient, token: string, nowMs: number = Date.now()): number {
  return nowMs + Math.max(client.validForMs(token), HANDED_OUT_FOR_MS);
}
