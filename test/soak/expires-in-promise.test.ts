/**
 * Soak: every `expires_at` the service hands out, checked against the moment the WeChat simulator
 * really killed that token, over 25 s of 20-second tokens with proactive and passive refreshes,
 * across separate OS processes running dist/index.js against one real memcached
 * (`npm run test:soak`).
 */
import { describe, expect, it } from 'vitest';
import { uniquePrefix, worldPerFile } from '../support/fixtures.ts';
import { TEST_APPID } from '../support/secrets.ts';

type TokenBody = { access_token: string; expires_in: number; expires_at: number };

const files = worldPerFile();
const pool = files.pool;
const spawnMany = pool.spawn;
const unique = uniquePrefix;

describe('the expires_in promise', () => {
  it('holds against the simulator’s real kill times while proactive and passive refreshes happen', async () => {
    files.world.sim.setTokenLifetime(20);
    try {
      const env = files.world.env({
        CACHE_KEY_PREFIX: unique('promise'),
        PASSIVE_REFRESH_MIN_AGE_SECONDS: '4',
      });
      const procs = await spawnMany(3, env);
      const promised = new Map<string, number>();
      const note = (body: TokenBody) =>
        promised.set(body.access_token, Math.max(promised.get(body.access_token) ?? 0, body.expires_at));
      const endAt = Date.now() + 25_000;
      let passiveAccepted = 0;
      await Promise.all([
        ...procs.slice(0, 2).map(async (p) => {
          while (Date.now() < endAt) {
            note(await p.invoke<TokenBody>({ appid: TEST_APPID }));
            await new Promise((r) => setTimeout(r, 20));
          }
        }),
        (async () => {
          // A consumer that keeps reporting the current token as invalid.
          while (Date.now() < endAt) {
            const current = await procs[2]!.invoke<TokenBody>({ appid: TEST_APPID });
            note(current);
            const after = await procs[2]!.invoke<TokenBody>({
              action: 'refresh_token',
              appid: TEST_APPID,
              invalid_token: current.access_token,
            });
            if (after.access_token !== current.access_token) passiveAccepted++;
            note(after);
            await new Promise((r) => setTimeout(r, 1500));
          }
        })(),
      ]);
      expect(passiveAccepted).toBeGreaterThanOrEqual(3);
      // Let every promise fall due, then compare each with when the token really died.
      const latest = Math.max(...promised.values());
      await new Promise((r) => setTimeout(r, Math.max(0, latest * 1000 - Date.now()) + 100));
      const broken: string[] = [];
      for (const [token, expiresAt] of promised) {
        const info = files.world.sim.tokenInfo(token);
        expect(info).toBeDefined();
        if (info!.deadAtMs < expiresAt * 1000)
          broken.push(`died ${expiresAt * 1000 - info!.deadAtMs} ms before its promise`);
      }
      expect(promised.size).toBeGreaterThanOrEqual(4);
      expect(broken).toEqual([]);
      const slack = [...promised].map(
        ([token, at]) => files.world.sim.tokenInfo(token)!.deadAtMs - at * 1000,
      );
      console.log(
        `promise: ${promised.size} tokens, ${passiveAccepted} passive refreshes; death − promise min ${Math.min(...slack)} ms`,
      );
    } finally {
      files.world.sim.setTokenLifetime(7200);
    }
  }, 60_000);
});
