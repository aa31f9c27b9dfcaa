/**
 * How each kind of record is obtained from WeChat: the access token (classic or stable endpoint,
 * with the fallbacks that keep a classic token alive) and the two tickets (which need a live access
 * token). Every call goes through the upstream guard.
 */

import type { CacheOutagePolicy, MissingRecordPolicy } from '../config.ts';
import {
  type CallContext,
  type FetchReason,
  type Served,
  type TicketType,
  type TokenKind,
  type TokenRecord,
  type TokenSource,
  ticketKind,
  weComApp,
} from '../domain.ts';
import { ServiceError } from '../errors.ts';
import type { Clock, SecretSource, WeChatApi } from '../ports.ts';
import { requireCredentials } from '../secrets/credentials.ts';
import { AmbiguousUpstreamError } from '../wechat/client.ts';
import { TOKEN_INVALID_ERRCODES } from '../wechat/errcodes.ts';
import { classicResumeAtMs, type LifetimeSettings } from './lifetime.ts';
import { type Fetched, type RecordKeys, recordKeys, type UpstreamName } from './record.ts';
import type { UpstreamGuard } from './upstream-guard.ts';

export interface FetchContext extends CallContext {
  reason: FetchReason;
  /** The record being replaced, if any. */
  current: TokenRecord | null;
  /** Stable apps: a passive refresh asks WeChat to force a new token. */
  force: boolean;
}

/** One (kind, appid): its cache keys and how to obtain a new value. */
export interface Target {
  kind: TokenKind;
  appid: string;
  keys: RecordKeys;
  fetch(ctx: FetchContext): Promise<Fetched>;
}

/** What a ticket fetch needs of the token service: a live access token, and passive refresh. */
export interface AccessTokens {
  get(appid: string, ctx: CallContext): Promise<Served>;
  refresh(appid: string, invalidToken: string, ctx: CallContext): Promise<Served>;
}

export interface FetcherDeps {
  wechat: WeChatApi;
  secrets: SecretSource;
  clock: Clock;
  guard: UpstreamGuard;
  settings: LifetimeSettings & {
    cacheKeyPrefix: string;
    cacheOutagePolicy: CacheOutagePolicy;
    missingRecordPolicy: MissingRecordPolicy;
  };
}

/**
 * Which endpoint a refresh of `current` uses. A classic app whose record is missing gets a stable
 * token first, and stays on the stable endpoint until `classicNotBeforeMs` (the loss rule of
 * lifetime.ts); an outage fetch uses the outage policy's endpoint. A WeCom app has one endpoint,
 * gettoken, whatever the record and the policies (which choose between WeChat's two).
 */
function endpointFor(
  deps: FetcherDeps,
  tokenApi: TokenSource,
  ctx: FetchContext,
): { api: TokenSource; classicNotBeforeMs?: number } {
  const { settings, clock } = deps;
  if (tokenApi === 'wecom') return { api: 'wecom' };
  if (ctx.reason === 'outage') {
    return { api: settings.cacheOutagePolicy === 'stable_fallback' ? 'stable' : tokenApi };
  }
  if (tokenApi === 'stable' || settings.missingRecordPolicy === 'classic') return { api: tokenApi };
  const now = clock.now();
  if (ctx.current === null) return { api: 'stable', classicNotBeforeMs: classicResumeAtMs(now, settings) };
  const notBefore = ctx.current.classicNotBeforeMs;
  if (notBefore !== undefined && now < notBefore) return { api: 'stable', classicNotBeforeMs: notBefore };
  return { api: 'classic' };
}

const TOKEN_UPSTREAM: Record<TokenSource, UpstreamName> = {
  classic: 'token',
  stable: 'stable_token',
  wecom: 'wecom_gettoken',
};

/** The upstream that issues a ticket of `type` for `appid` (a WeChat appid or a WeCom app id). */
export function ticketUpstream(appid: string, type: TicketType): UpstreamName {
  if (weComApp(appid)) return type === 'jsapi' ? 'wecom_ticket_jsapi' : 'wecom_ticket_agent_config';
  return type === 'jsapi' ? 'ticket_jsapi' : 'ticket_wx_card';
}

/** The upstreams that may issue an app's access token. */
export function tokenUpstreams(app: { tokenApi: TokenSource }): UpstreamName[] {
  return app.tokenApi === 'wecom' ? ['wecom_gettoken'] : ['token', 'stable_token'];
}

/** The access token of `appid`. */
export function tokenTarget(deps: FetcherDeps, appid: string): Target {
  const kind: TokenKind = 'access_token';
  return {
    kind,
    appid,
    keys: recordKeys(deps.settings.cacheKeyPrefix, kind, appid),
    fetch: async (ctx) => {
      const { wechat, clock, guard, secrets } = deps;
      let app = await requireCredentials(secrets, appid);
      const chosen = endpointFor(deps, app.tokenApi, ctx);
      let api = chosen.api;
      const upstream: UpstreamName = TOKEN_UPSTREAM[api];
      const force = api === 'stable' && ctx.force;
      const call = async (countRetry: () => void): Promise<Fetched> => {
        const sentAtMs = clock.now();
        const grant = await wechat.fetchAccessToken(app, api, {
          deadlineAtMs: ctx.deadlineAtMs,
          forceRefresh: force,
          beforeRetry: countRetry,
        });
        return {
          grant,
          origin: api,
          sentAtMs,
          ...(chosen.classicNotBeforeMs === undefined
            ? {}
            : { classicNotBeforeMs: chosen.classicNotBeforeMs }),
        };
      };
      const target = { kind, appid };
      try {
        return await guard.call(upstream, target, ctx.reason, call);
      } catch (err) {
        if (!(err instanceof ServiceError)) throw err;
        // Two classic failures turn to the stable endpoint, whose token no classic fetch invalidates:
        // - the daily quota is used up (stable has its own, far larger, quota);
        // - the call failed ambiguously (timeout, reset, gateway error): WeChat may have issued a
        //   token all the same, and a second classic call now would kill the cached token at once.
        if (
          api === 'classic' &&
          (err.code === 'wechat_quota_exhausted' || err instanceof AmbiguousUpstreamError)
        ) {
          api = 'stable';
          try {
            return await guard.call('stable_token', target, ctx.reason, call);
          } catch {
            throw err;
          }
        }
        // Secret rotation: re-read the secret once; if it changed, try once more with the new one.
        if (err.code !== 'wechat_credentials_rejected') throw err;
        const reloaded = await requireCredentials(secrets, appid, { reload: true }).catch((e: unknown) => {
          if (e instanceof ServiceError && e.code === 'unknown_appid') return undefined;
          throw e;
        });
        if (!reloaded || reloaded.secret === app.secret) throw err;
        app = reloaded;
        await guard.forget(upstream, appid);
        return guard.call(upstream, target, ctx.reason, call);
      }
    },
  };
}

/** A ticket of `appid`: fetched with the app's access token, refreshed passively if WeChat calls it dead. */
export function ticketTarget(
  deps: FetcherDeps,
  tokens: AccessTokens,
  appid: string,
  type: TicketType,
): Target {
  const kind = ticketKind(type);
  const upstream = ticketUpstream(appid, type);
  return {
    kind,
    appid,
    keys: recordKeys(deps.settings.cacheKeyPrefix, kind, appid),
    fetch: async (ctx) => {
      const { wechat, clock, guard } = deps;
      const token = await tokens.get(appid, ctx);
      const once = (accessToken: string, reason: FetchReason) =>
        guard.call(upstream, { kind, appid }, reason, async (countRetry): Promise<Fetched> => {
          const sentAtMs = clock.now();
          const grant = await wechat.fetchTicket(appid, accessToken, type, {
            deadlineAtMs: ctx.deadlineAtMs,
            beforeRetry: countRetry,
          });
          return { grant, origin: 'ticket', sentAtMs };
        });
      // At the end of a ticket's life WeChat may still hand back the dying ticket for a moment:
      // ask again shortly rather than serve it, a few times within the deadline.
      const call = async (accessToken: string, reason: FetchReason) => {
        for (let attempt = 1; ; attempt++) {
          const fetched = await once(accessToken, reason);
          // Asked once per counted life: a ticket already past it (age unknown) is polled by the schedule of its record.
          const stale =
            ctx.current?.value === fetched.grant.value &&
            !ctx.current.ageUnknown &&
            fetched.sentAtMs >= ctx.current.expiresAtMs;
          if (!stale || attempt >= 4 || clock.now() + 200 >= ctx.deadlineAtMs) return fetched;
          await clock.sleep(100);
        }
      };
      try {
        return await call(token.value, ctx.reason);
      } catch (err) {
        // getticket answering 40001/42001 means the access token died: refresh it passively, retry once.
        if (
          !(err instanceof ServiceError) ||
          err.errcode === undefined ||
          !TOKEN_INVALID_ERRCODES.has(err.errcode)
        )
          throw err;
        const refreshed = await tokens.refresh(appid, token.value, ctx);
        if (refreshed.value === token.value) throw err;
        return call(refreshed.value, 'ticket_retry');
      }
    },
  };
}
