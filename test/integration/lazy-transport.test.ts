/**
 * dist/index.js loads the WeChat HTTP transport (dist/wechat-http.js, undici inside) on its first
 * upstream call only. Proof: an instance running a copy of dist/ without that file serves a cache hit,
 * and only a miss needs it. The copies live outside the repository, where @aws-sdk/* cannot be
 * resolved, so the instances take the app's credentials from the environment.
 */
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startWorld, uniquePrefix, type World } from '../support/fixtures.ts';
import { instancePool } from '../support/instances.ts';
import { TEST_APPID, TEST_SECRET } from '../support/secrets.ts';

type TokenBody = { access_token: string; expires_in: number };
type ErrorBody = { error: { code: string; message: string } };

const pool = instancePool();
let world: World;
let copies: string;

beforeAll(async () => {
  world = await startWorld();
  copies = mkdtempSync(join(tmpdir(), 'wts-lazy-'));
});
afterEach(async () => {
  await pool.closeAll();
});
afterAll(async () => {
  await world.close();
  rmSync(copies, { recursive: true, force: true });
});

/** A copy of dist/ outside the repository, optionally without one of its files; returns its index.js. */
function copyOfDist(name: string, without?: string): string {
  const dir = join(copies, name);
  cpSync(resolve('dist'), dir, { recursive: true });
  if (without) rmSync(join(dir, without));
  return join(dir, 'index.js');
}

describe('the deployable bundle and its lazily loaded HTTP transport', () => {
  it('serves a warm-cache hit without dist/wechat-http.js; a miss needs the file and fetches with it', async () => {
    world.sim.resetCounters();
    const env = {
      WECHAT_API_BASE_URL: world.sim.baseUrl,
      MEMCACHED_SERVERS: world.memcachedAddress,
      CACHE_KEY_PREFIX: uniquePrefix('lazy'),
      WECHAT_APPID: TEST_APPID,
      WECHAT_APPSECRET: TEST_SECRET,
    };
    const complete = copyOfDist('complete');
    const stripped = copyOfDist('stripped', 'wechat-http.js');

    // A miss, with the file: the transport is loaded and the token fetched.
    const [fetcher] = await pool.spawn(1, { ...env, WTS_BUNDLE: complete });
    const fetched = await fetcher!.invoke<TokenBody>({ appid: TEST_APPID });
    expect(fetched, JSON.stringify(fetched)).toHaveProperty('access_token');
    expect(world.sim.calls.token + world.sim.calls.stableToken).toBe(1);

    // A fresh instance without the file: the hit is served from the cache.
    const [hitter] = await pool.spawn(1, { ...env, WTS_BUNDLE: stripped });
    const hit = await hitter!.invoke<TokenBody>({ appid: TEST_APPID });
    expect(hit.access_token).toBe(fetched.access_token);
    expect(world.sim.calls.total).toBe(1);
    expect(
      hitter!
        .logs()
        .filter((l) => l.event === 'invocation')
        .map((l) => l.source),
    ).toEqual(['cache']);

    // An instance without the file on a miss (an empty cache): it names the missing file, calls no
    // WeChat and throws nothing.
    const [misser] = await pool.spawn(1, {
      ...env,
      CACHE_KEY_PREFIX: uniquePrefix('lazy'),
      WTS_BUNDLE: stripped,
    });
    const miss = await misser!.invoke<ErrorBody>({ appid: TEST_APPID });
    expect(miss.error.code).toBe('config_invalid');
    expect(miss.error.message).toContain('wechat-http.js');
    expect(world.sim.calls.total).toBe(1);
  });
});
