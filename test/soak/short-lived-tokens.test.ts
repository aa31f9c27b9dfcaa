/**
 * Soak: tokens with a 20-second life, so several refreshes happen in 45 s of real time, across
 * separate OS processes running dist/index.js against one real memcached and the WeChat simulator
 * (`npm run test:soak`).
 */
import { describe, expect, it } from 'vitest';
import { CLASSIC_FIRST, uniquePrefix, worldPerFile } from '../support/fixtures.ts';
import { TEST_APPID } from '../support/secrets.ts';

type TokenBody = { access_token: string; expires_in: number; expires_at: number };

const files = worldPerFile();
const pool = files.pool;
const spawnMany = pool.spawn;
const unique = uniquePrefix;

describe('short-lived tokens under steady load', () => {
  it('20-second tokens, 3 processes for 45 s: at most 6 fetches and never an invalidated token', async () => {
    files.world.sim.setTokenLifetime(20);
    try {
      // The classic refresh cycle from the first token on.
      const env = files.world.env({ CACHE_KEY_PREFIX: unique('short'), ...CLASSIC_FIRST });
      const procs = await spawnMany(3, env);
      files.world.sim.resetCounters();
      const endAt = Date.now() + 45_000;
      let served = 0;
      const bad: string[] = [];
      await Promise.all(
        procs.map(async (p) => {
          while (Date.now() < endAt) {
            const body = await p.invoke<TokenBody>({ appid: TEST_APPID });
            const status = files.world.sim.tokenStatus(body.access_token);
            if (status !== 'valid') {
              const info = files.world.sim.tokenInfo(body.access_token);
              bad.push(
                `${status} ${info?.kind} issued ${info ? Date.now() - info.issuedAtMs : '?'} ms ago, dead ${info ? Date.now() - info.deadAtMs : '?'} ms ago`,
              );
            }
            served++;
            await new Promise((r) => setTimeout(r, 25));
          }
        }),
      );
      expect(served).toBeGreaterThan(1000);
      if (bad.length > 0) {
        // Diagnostics for a failure: every warning the instances logged and when each fetch happened.
        const warnings = procs.flatMap((p, i) =>
          p
            .logs()
            .filter((l) => l.level === 'WARN' || l.event === 'upstream.fetch')
            .map(
              (l) => `#${i} ${l.timestamp} ${l.event} ${l.reason ?? ''} ${l.code ?? ''} ${l.outcome ?? ''}`,
            ),
        );
        const issued = files.world.sim
          .tokensIssued(TEST_APPID)
          .filter((t) => t.issuedAtMs > endAt - 60_000)
          .map(
            (t) =>
              `${t.kind} ${new Date(t.issuedAtMs).toISOString()} dead ${new Date(t.deadAtMs).toISOString()} ${t.invalidatedAtMs ? 'killed' : ''}`,
          );
        console.error(
          `short-lived tokens: ${bad.length} bad\n${warnings.join('\n')}\nissued:\n${issued.join('\n')}`,
        );
      }
      expect(bad).toEqual([]);
      console.log(
        `short-lived tokens: ${served} served over 45 s, ${files.world.sim.calls.token} WeChat fetches, 0 invalidated`,
      );
      expect(files.world.sim.calls.token).toBeGreaterThanOrEqual(3);
      expect(files.world.sim.calls.token).toBeLessThanOrEqual(6);
    } finally {
      files.world.sim.setTokenLifetime(7200);
    }
  }, 70_000);
});
