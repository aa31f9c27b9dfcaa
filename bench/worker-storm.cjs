'use strict';
/**
 * Cold-storm worker for this product: M cold handler instances (createHandler(), each with its own
 * container and Memcached connection, as M Lambda instances would have) in one process. They are
 * built, then all invoked at once on the parent's "go"; the tokens go back over IPC.
 */
const path = require('node:path');
const { createHandler } = require(process.env.BENCH_DIST || path.join(__dirname, '..', 'dist', 'index.js'));

const callers = Number(process.argv[2]);
const appid = process.env.WECHAT_APPID;
const handlers = Array.from({ length: callers }, () => createHandler());

process.on('message', async (message) => {
  if (message !== 'go') return;
  const startedAt = Date.now();
  const results = await Promise.all(
    handlers.map(async (handler, i) => {
      const t0 = performance.now();
      const body = await handler(
        { appid },
        {
          awsRequestId: `storm-${process.pid}-${i}`,
          getRemainingTimeInMillis: () => 10_000 - (Date.now() - startedAt),
        },
      );
      return {
        token: body.access_token,
        error: body.error ? body.error.code : undefined,
        ms: performance.now() - t0,
      };
    }),
  );
  process.send({ results }, () => process.exit(0));
});
process.send('ready');
