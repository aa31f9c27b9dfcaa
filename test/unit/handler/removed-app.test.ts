/**
 * An app removed from the credentials secret: once an instance has re-read the secret, every channel
 * answers 404 unknown_appid and the schedule stops refreshing it. Before an instance's first read,
 * a cache hit is served without loading the AWS SDK (the cold-start property), so the removal is
 * seen only when that instance first needs the secret.
 */
import { describe, expect, it } from 'vitest';
import { TEST_APPID, TEST_APPID_2 } from '../../support/secrets.ts';
import { bearer, type ProxyAnswer, parse, secretJson, v1, v2, world } from './harness.ts';

const SECRET_CACHE_MS = 300_000;
const SCHEDULE = { source: 'aws.events', 'detail-type': 'Scheduled Event', detail: {} };

type Answer = {
  access_token?: string;
  ticket?: string;
  appId?: string;
  error?: { code: string; message: string };
};

describe('an app removed from the secret', () => {
  it('answers 404 unknown_appid on every channel once the secret is re-read, without calling WeChat', async () => {
    const w = world();
    const instance = w.instance();
    const token = await instance.invoke<Answer>({ appid: TEST_APPID });
    await instance.invoke<Answer>({ action: 'get_ticket', appid: TEST_APPID, type: 'jsapi' });
    expect(token.access_token).toBe('AT-1');

    w.secret.text = secretJson([TEST_APPID_2]);
    // Inside SECRET_CACHE_SECONDS the held copy still lists it: served as before.
    w.time.advance(SECRET_CACHE_MS - 1000);
    expect((await instance.invoke<Answer>({ appid: TEST_APPID })).access_token).toBe('AT-1');
    w.time.advance(1000);
    const tokenCalls = w.wechat.tokenCalls.length;
    const ticketCalls = w.wechat.ticketCalls.length;

    const answers: Record<string, Answer | undefined> = {
      get_token: await instance.invoke<Answer>({ appid: TEST_APPID }),
      refresh_token: await instance.invoke<Answer>({
        action: 'refresh_token',
        appid: TEST_APPID,
        invalid_token: 'AT-1',
      }),
      get_ticket: await instance.invoke<Answer>({ action: 'get_ticket', appid: TEST_APPID, type: 'jsapi' }),
      jssdk_config: await instance.invoke<Answer>({
        action: 'jssdk_config',
        appid: TEST_APPID,
        url: 'https://example.com/page',
      }),
      http_v2: parse(
        await instance.invoke<ProxyAnswer>(
          v2('GET', '/token', { query: { appid: TEST_APPID }, headers: bearer() }),
        ),
      ) as Answer,
      http_v1: parse(
        await instance.invoke<ProxyAnswer>(
          v1('GET', '/ticket', { query: { appid: TEST_APPID, type: 'jsapi' }, headers: bearer() }),
        ),
      ) as Answer,
    };
    for (const [channel, answer] of Object.entries(answers)) {
      expect(answer?.error?.code, channel).toBe('unknown_appid');
      expect(answer?.error?.message, channel).toContain(TEST_APPID);
    }
    expect(w.wechat.tokenCalls.length).toBe(tokenCalls);
    expect(w.wechat.ticketCalls.length).toBe(ticketCalls);
    // The other app is unaffected.
    expect((await instance.invoke<Answer>({ appid: TEST_APPID_2 })).access_token).toBeDefined();
  });

  it('is no longer refreshed by the schedule', async () => {
    const w = world();
    const instance = w.instance();
    await instance.invoke({ appid: TEST_APPID });
    await instance.invoke({ appid: TEST_APPID_2 });
    // Both tokens are now inside their refresh window. A first token is a stable one (the record-loss
    // rule), refreshed in the last 240 s of its 7200-s life: 7100 s is inside that window.
    w.time.advance(7_100_000);
    w.secret.text = secretJson([TEST_APPID_2]);
    const before = w.wechat.tokenCalls.length;
    const summary = await instance.invoke<{ apps: number; refreshed: { appid: string; kind: string }[] }>(
      SCHEDULE,
    );
    expect(summary.apps).toBe(1);
    expect(summary.refreshed.map((r) => r.appid)).not.toContain(TEST_APPID);
    const refreshedFor = w.wechat.tokenCalls.slice(before).map((c) => c.app.appid);
    expect(refreshedFor).toEqual([TEST_APPID_2]);
  });

  it('before an instance first reads the secret, a cache hit is served without reading it; the first read turns the check on', async () => {
    const w = world();
    await w.instance().invoke({ appid: TEST_APPID }); // a peer put the token in the cache
    w.secret.text = secretJson([TEST_APPID_2]);
    const readsBefore = w.secret.reads;

    const fresh = w.instance();
    const hit = await fresh.invoke<Answer>({ appid: TEST_APPID });
    expect(hit.access_token).toBe('AT-1');
    expect(w.secret.reads).toBe(readsBefore); // the AWS SDK was never needed

    // An HTTP request needs the secret (the client key): from then on the removal is seen.
    await fresh.invoke(v2('GET', '/token', { query: { appid: TEST_APPID_2 }, headers: bearer() }));
    expect(w.secret.reads).toBe(readsBefore + 1);
    expect((await fresh.invoke<Answer>({ appid: TEST_APPID })).error?.code).toBe('unknown_appid');
  });

  it('keeps deciding with the held copy while Secrets Manager cannot be read', async () => {
    const w = world({ SECRET_GRACE_SECONDS: '0' });
    const instance = w.instance();
    await instance.invoke({ appid: TEST_APPID });
    w.secret.failing = 'InternalServiceError';
    w.time.advance(SECRET_CACHE_MS);
    // The copy is past its cache time and grace, the read fails: the cache hit is still served,
    // because the copy held still lists the app.
    expect((await instance.invoke<Answer>({ appid: TEST_APPID })).access_token).toBe('AT-1');
    expect((await instance.invoke<Answer>({ appid: 'wx1111111111111111' })).error?.code).toBe(
      'unknown_appid',
    );
  });
});
