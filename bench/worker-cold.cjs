'use strict';
/**
 * Cold-start worker: a fresh `node` process that requires the deployable bundle and serves one
 * direct invoke `{appid}`, timed from inside with performance.now() (node's own bootstrap before
 * this line is reported separately, not counted). Prints one JSON line starting with {"bench":…};
 * the handler's own log lines go to stdout too and are told apart by the parent.
 */
const t0 = performance.now();
const path = require('node:path');
const mod = require(process.env.BENCH_DIST || path.join(__dirname, '..', 'dist', 'index.js'));
const t1 = performance.now();
mod
  .handler(
    { appid: process.env.BENCH_APPID },
    { awsRequestId: 'cold-start', getRemainingTimeInMillis: () => 10_000 },
  )
  .then((body) => {
    const t2 = performance.now();
    const result = {
      bench: 'cold',
      bootMs: t0,
      requireMs: t1 - t0,
      firstCallMs: t2 - t1,
      totalMs: t2 - t0,
      ok: typeof body.access_token === 'string',
      error: body.error ? body.error.code : undefined,
      sdkLoaded: Object.keys(require.cache).some((file) => file.includes(`${path.sep}@aws-sdk${path.sep}`)),
      modulesLoaded: Object.keys(require.cache).length,
    };
    process.stdout.write(`${JSON.stringify(result)}\n`);
    process.exit(0);
  })
  .catch((err) => {
    process.stderr.write(`worker-cold: ${err.stack || err}\n`);
    process.exit(1);
  });
