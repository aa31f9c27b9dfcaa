'use strict';
/**
 * Cold-storm worker for the seeds' algorithm, the way the popular SDKs do it with a shared cache:
 * get the token from Memcached; if it is missing, fetch a classic token from WeChat and set it with
 * TTL 7200. No lock. M callers, each with its own Memcached client (its own "instance").
 */
const memjs = require('memjs');

const callers = Number(process.argv[2]);
const { MEMCACHED_SERVERS, SEEDS_KEY, WECHAT_APPID, WECHAT_APPSECRET, WECHAT_API_BASE_URL } = process.env;
const clients = Array.from({ length: callers }, () =>
  memjs.Client.create(MEMCACHED_SERVERS, {
    retries: 1,
    timeout: 0.5,
    keepAlive: true,
    logger: { log: () => {} },
  }),
);

async function getToken(client) {
  const { value } = await client.get(SEEDS_KEY);
  if (value) return value.toString('utf8');
  const url = `${WECHAT_API_BASE_URL}/cgi-bin/token?grant_type=client_credential&appid=${WECHAT_APPID}&secret=${WECHAT_APPSECRET}`;
  const body = await (await fetch(url)).json();
  if (typeof body.access_token !== 'string') throw new Error(`WeChat answered errcode ${body.errcode}`);
  await client.set(SEEDS_KEY, body.access_token, { expires: 7200 });
  return body.access_token;
}

process.on('message', async (message) => {
  if (message !== 'go') return;
  const results = await Promise.all(
    clients.map(async (client) => {
      const t0 = performance.now();
      try {
        return { token: await getToken(client), ms: performance.now() - t0 };
      } catch (err) {
        return { error: String(err.message || err), ms: performance.now() - t0 };
      }
    }),
  );
  for (const client of clients) client.close();
  process.send({ results }, () => process.exit(0));
});
process.send('ready');
