import { describe, expect, it } from 'vitest';
import type { Origin, TokenRecord } from '../../../lib/domain.ts';
import {
  effectiveWindowMs,
  guaranteedUntilMs,
  type LifetimeSettings,
  naturalExpiryMs,
  refreshAtMs,
  secondsUntil,
} from '../../../lib/token/lifetime.ts';
import { WeChatClient } from '../../../lib/wechat/client.ts';
import { startWeChatSimulator } from '../../../local/stand-ins/wechat-simulator.ts';
import { TEST_APPID, TEST_APPID_STABLE, TEST_SECRET_STABLE } from '../../support/secrets.ts';

const STABLE_APP = { appid: TEST_APPID_STABLE, secret: TEST_SECRET_STABLE };

const SEC = 1000;
const F = Date.UTC(2025, 0, 15, 4, 0, 0);
/** WeChat keeps the previous classic token alive this long after a refresh (wechat-facts §1). */
const WECHAT_OVERLAP_MS = 300 * SEC;

const DEFAULTS: LifetimeSettings = {
  refreshWindowSeconds: 900,
  passiveRefreshMinAgeSeconds: 300,
  passiveRefreshDailyBudget: 100,
  lockLeaseSeconds: 10,
};

function recordOf(
  origin: Origin,
  fetchedAtMs: number,
  expiresInSeconds: number,
  jitter: number,
  settings: LifetimeSettings,
): TokenRecord {
  const expiresAtMs = naturalExpiryMs(fetchedAtMs, expiresInSeconds);
  return {
    kind: origin === 'ticket' ? 'jsapi_ticket' : 'access_token',
    appid: TEST_APPID,
    value: 'VALUE',
    origin,
    fetchedAtMs,
    expiresAtMs,
    refreshAtMs: refreshAtMs(fetchedAtMs, expiresAtMs, origin, jitter, settings),
    generation: 1,
    writer: 'test',
  };
}

describe('naturalExpiryMs', () => {
  it('counts WeChat’s expires_in from when the request was sent, less 10 s for clock skew', () => {
    expect(naturalExpiryMs(F, 7200)).toBe(F + 7200 * SEC - 10 * SEC);
  });

  it.each([1, 20, 99, 100, 101, 300, 7200])(
    'keeps a %i-second token’s margin within a tenth of its life and at most 10 s',
    (s) => {
      const marginMs = F + s * SEC - naturalExpiryMs(F, s);
      expect(marginMs).toBeGreaterThan(0);
      expect(marginMs).toBeLessThanOrEqual(Math.min(10 * SEC, (s * SEC) / 10));
      // …and no smaller than needed: exactly the smaller of the two.
      expect(marginMs).toBe(Math.min(10 * SEC, Math.floor((s * SEC) / 10)));
    },
  );
});

describe('effectiveWindowMs', () => {
  it('uses the configured window for a 7200-s classic token', () => {
    expect(effectiveWindowMs(7190 * SEC, 'classic', DEFAULTS)).toBe(DEFAULTS.refreshWindowSeconds * SEC);
  });

  it('scales the window to half the life of a 20-s token (refreshed about every 10 s, not on every request)', () => {
    expect(effectiveWindowMs(20 * SEC, 'classic', DEFAULTS)).toBe(10 * SEC);
    expect(effectiveWindowMs(20 * SEC, 'ticket', DEFAULTS)).toBe(10 * SEC);
  });

  it('keeps a stable token’s window inside the last 240 s, where WeChat hands out a new token', () => {
    expect(effectiveWindowMs(7190 * SEC, 'stable', DEFAULTS)).toBe(240 * SEC);
    expect(effectiveWindowMs(7190 * SEC, 'stable', { ...DEFAULTS, refreshWindowSeconds: 60 })).toBe(60 * SEC);
    // A stable token that came back with 300 s left: half its life is the tighter bound.
    expect(effectiveWindowMs(300 * SEC, 'stable', DEFAULTS)).toBe(150 * SEC);
  });

  it.each(['classic', 'stable', 'ticket'] as const)('never exceeds half the life of a %s token', (origin) => {
    for (const lifeS of [1, 2, 19, 20, 301, 600, 7190]) {
      for (const windowS of [1, 60, 900, 7000]) {
        const w = effectiveWindowMs(lifeS * SEC, origin, { ...DEFAULTS, refreshWindowSeconds: windowS });
        expect(w).toBeLessThanOrEqual((lifeS * SEC) / 2);
        expect(w).toBeLessThanOrEqual(windowS * SEC);
        expect(w).toBeGreaterThanOrEqual(0);
      }
    }
  });
});

describe('refreshAtMs', () => {
  it.each([
    ['classic', 7200],
    ['stable', 7200],
    ['ticket', 7200],
    ['classic', 20],
  ] as const)(
    'starts a %s refresh (%i s) between expiry − window and a quarter window later, by jitter',
    (origin, s) => {
      const expiresAtMs = naturalExpiryMs(F, s);
      const windowMs = effectiveWindowMs(expiresAtMs - F, origin, DEFAULTS);
      let previous = Number.NEGATIVE_INFINITY;
      for (const jitter of [0, 0.1, 0.25, 0.5, 0.75, 0.999999]) {
        const at = refreshAtMs(F, expiresAtMs, origin, jitter, DEFAULTS);
        expect(at).toBeGreaterThanOrEqual(expiresAtMs - windowMs);
        expect(at).toBeLessThanOrEqual(expiresAtMs - windowMs + windowMs / 4);
        expect(at).toBeLessThan(expiresAtMs);
        expect(at).toBeGreaterThanOrEqual(previous);
        expect(Number.isInteger(at)).toBe(true);
        previous = at;
      }
      expect(refreshAtMs(F, expiresAtMs, origin, 0, DEFAULTS)).toBe(expiresAtMs - windowMs);
    },
  );

  it('spreads apps over the quarter window', () => {
    const expiresAtMs = naturalExpiryMs(F, 7200);
    const a = refreshAtMs(F, expiresAtMs, 'classic', 0.1, DEFAULTS);
    const b = refreshAtMs(F, expiresAtMs, 'classic', 0.9, DEFAULTS);
    expect(b - a).toBeGreaterThan(0.75 * 0.25 * DEFAULTS.refreshWindowSeconds * SEC);
  });
});

/**
 * The worst refresh schedule the service's rules allow, found by brute force on a time grid, written
 * from the rules rather than from the formula in lifetime.ts:
 * - a refresh replacing the classic token T may happen proactively at or after T's refreshAt, or
 *   passively (when passive refresh is enabled) once T is minAge old and — T having been seen current
 *   at `confirmedAt` — no earlier than one lock lease before that (an in-flight refresh not yet written);
 * - the refresh at R1 issues T1 and leaves T alive until R1 + 300 s; the next refresh R2 (proactive at
 *   T1's earliest refreshAt, or passive once T1 is minAge old) kills T at once;
 * - T dies at min(natural expiry, R1 + 300 s, R2), minimised over every allowed R1.
 */
function earliestKillMs(
  expiresInSeconds: number,
  jitter: number,
  confirmedAtMs: number,
  settings: LifetimeSettings,
  stepMs: number,
): number {
  const expiresAt = naturalExpiryMs(F, expiresInSeconds);
  const refreshAt = refreshAtMs(F, expiresAt, 'classic', jitter, settings);
  const passive = settings.passiveRefreshDailyBudget > 0;
  const minAgeMs = settings.passiveRefreshMinAgeSeconds * SEC;
  const leaseMs = settings.lockLeaseSeconds * SEC;

  let kill = expiresAt;
  for (let r1 = F; r1 < expiresAt; r1 += stepMs) {
    const proactive = r1 >= refreshAt;
    const passiveAllowed = passive && r1 >= F + minAgeMs && r1 >= confirmedAtMs - leaseMs;
    if (!proactive && !passiveAllowed) continue;
    const t1ExpiresAt = naturalExpiryMs(r1, expiresInSeconds);
    const t1RefreshAt = refreshAtMs(r1, t1ExpiresAt, 'classic', 0, settings);
    const r2 = Math.min(t1RefreshAt, passive ? r1 + minAgeMs : Number.POSITIVE_INFINITY);
    kill = Math.min(kill, r1 + WECHAT_OVERLAP_MS, r2);
  }
  return kill;
}

describe('guaranteedUntilMs', () => {
  /** WeChat's real lifetime (7200 s) and lifetimes used by tests and short-lived token simulations. */
  const grid = {
    expiresIn: [7200, 1200, 600, 300, 20],
    windowS: [60, 900, 3600],
    minAgeS: [0, 60, 300, 1200],
    leaseS: [10, 30],
    budget: [0, 100],
    jitter: [0, 0.5, 0.999],
    ageFraction: [0, 0.05, 0.2, 0.5, 0.8, 0.95, 0.99],
  };

  it('never promises a classic token past the earliest moment the allowed refreshes could kill it, nor more than 1 s short of it', () => {
    const broken: string[] = [];
    let checked = 0;
    for (const expiresIn of grid.expiresIn) {
      const stepMs = Math.min(SEC, (expiresIn * SEC) / 200);
      for (const windowS of grid.windowS)
        for (const minAgeS of grid.minAgeS)
          for (const leaseS of grid.leaseS)
            for (const budget of grid.budget)
              for (const jitter of grid.jitter)
                for (const fraction of grid.ageFraction) {
                  const settings: LifetimeSettings = {
                    refreshWindowSeconds: windowS,
                    passiveRefreshMinAgeSeconds: minAgeS,
                    passiveRefreshDailyBudget: budget,
                    lockLeaseSeconds: leaseS,
                  };
                  const record = recordOf('classic', F, expiresIn, jitter, settings);
                  const life = record.expiresAtMs - F;
                  const confirmedAtMs = F + Math.floor((fraction * life) / stepMs) * stepMs;
                  const promised = guaranteedUntilMs(record, confirmedAtMs, settings);
                  const kill = earliestKillMs(expiresIn, jitter, confirmedAtMs, settings, stepMs);
                  checked++;
                  if (promised > kill || promised < kill - SEC) {
                    broken.push(
                      `expires_in ${expiresIn}, window ${windowS}, minAge ${minAgeS}, lease ${leaseS}, budget ${budget}, ` +
                        `jitter ${jitter}, age ${(confirmedAtMs - F) / SEC}s: promised +${(promised - F) / SEC}s, ` +
                        `earliest kill +${(kill - F) / SEC}s`,
                    );
                  }
                }
    }
    expect(checked).toBeGreaterThan(1000);
    expect(broken).toEqual([]);
  });

  it('promises a fresh classic token with the default settings about min age + 300 s', () => {
    const record = recordOf('classic', F, 7200, 0.5, DEFAULTS);
    const promised = guaranteedUntilMs(record, F, DEFAULTS);
    const kill = earliestKillMs(7200, 0.5, F, DEFAULTS, SEC);
    expect(promised).toBe(kill);
    expect(promised).toBe(F + DEFAULTS.passiveRefreshMinAgeSeconds * SEC + WECHAT_OVERLAP_MS);
  });

  it('promises a ticket its natural expiry: re-fetching a ticket does not invalidate it', () => {
    for (const confirmedAt of [F, F + 3600 * SEC, F + 7000 * SEC]) {
      const record = recordOf('ticket', F, 7200, 0.3, DEFAULTS);
      expect(guaranteedUntilMs(record, confirmedAt, DEFAULTS)).toBe(record.expiresAtMs);
    }
  });

  it('promises a stable token its natural expiry when passive (force) refresh is off', () => {
    const settings = { ...DEFAULTS, passiveRefreshDailyBudget: 0 };
    for (const expiresIn of [300, 7200]) {
      const record = recordOf('stable', F, expiresIn, 0.3, settings);
      expect(guaranteedUntilMs(record, F + 100 * SEC, settings)).toBe(record.expiresAtMs);
    }
  });

  it('never promises beyond natural expiry', () => {
    for (const origin of ['classic', 'stable', 'ticket'] as const) {
      for (const expiresIn of [20, 300, 7200]) {
        const record = recordOf(origin, F, expiresIn, 0.7, DEFAULTS);
        for (const confirmedAt of [F, record.refreshAtMs, record.expiresAtMs - 1]) {
          expect(guaranteedUntilMs(record, confirmedAt, DEFAULTS)).toBeLessThanOrEqual(record.expiresAtMs);
        }
      }
    }
  });

  // WeChat spaces two *force* refreshes 30 s apart; the first may come as soon as the token is min-age old.
  it('promises a stable token no longer than WeChat keeps it when two force refreshes come 30 s apart (min age below 30 s)', async () => {
    const settings = { ...DEFAULTS, passiveRefreshMinAgeSeconds: 0 };
    let now = F;
    const sim = await startWeChatSimulator({ apps: [STABLE_APP], now: () => now });
    try {
      const wechat = new WeChatClient({
        baseUrl: sim.baseUrl,
        attemptTimeoutMs: 2000,
        clock: { now: () => now, sleep: async () => {}, random: () => 0.5 },
      });
      const call = (forceRefresh: boolean) =>
        wechat.fetchAccessToken(STABLE_APP, 'stable', { deadlineAtMs: now + 5000, forceRefresh });
      // T: a normal-mode stable fetch at F, confirmed current at once.
      const t = await call(false);
      const expiresAtMs = naturalExpiryMs(F, t.expiresInSeconds);
      const record: TokenRecord = {
        ...recordOf('stable', F, t.expiresInSeconds, 0.3, settings),
        expiresAtMs,
        refreshAtMs: refreshAtMs(F, expiresAtMs, 'stable', 0.3, settings),
      };
      const promised = guaranteedUntilMs(record, F, settings);
      // What the rules allow: T is older than the 0-s min age at F + 1 s, and no force refresh came
      // before, so a passive force refresh may run then; the next one may run 30 s later.
      now = F + 1 * SEC;
      await call(true);
      now = F + 31 * SEC;
      await call(true);
      expect(sim.calls.stableTokenForceRefreshes).toBe(2);
      const deadAtMs = sim.tokenInfo(t.value)?.deadAtMs ?? 0;
      expect(promised).toBeLessThanOrEqual(deadAtMs);
    } finally {
      await sim.close();
    }
  });
});

describe('secondsUntil', () => {
  it.each([
    [F + 90_999, F, 90],
    [F + 91_000, F, 91],
    [F, F, 0],
    [F - 5000, F, 0],
  ])('gives whole seconds from now to the moment, never negative', (until, now, seconds) => {
    expect(secondsUntil(until, now)).toBe(seconds);
  });
});
