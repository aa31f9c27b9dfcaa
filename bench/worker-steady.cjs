'use strict';
/**
 * Steady-state worker, one "Lambda instance" running the deployable bundle:
 *   node bench/worker-steady.cjs schedule <intervalMs> — the EventBridge schedule event every interval
 *   node bench/worker-steady.cjs user <intervalMs>     — a direct invoke {appid} every interval
 * Each token handed out is reported to the parent over IPC at once (the parent checks it with the
 * simulator); stops on the parent's "stop".
 */
const path = require('node:path');
const { randomUUID } = require('node:crypto');
const { handler } = require(process.env.BENCH_DIST || path.join(__dirname, '..', 'dist', 'index.js'));

const role = process.argv[2];
const intervalMs = Number(process.argv[3]);
const appid = process.env.WECHAT_APPID;
let stopped = false;
process.on('message', (message) => {
  if (message === 'stop') stopped = true;
});

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));
const context = () => {
  const startedAt = Date.now();
  return { awsRequestId: randomUUID(), getRemainingTimeInMillis: () => 10_000 - (Date.now() - startedAt) };
};
const scheduleEvent = () => ({
  version: '0',
  id: randomUUID(),
  'detail-type': 'Scheduled Event',
  source: 'aws.events',
  account: '000000000000',
  time: new Date().toISOString(),
  region: 'us-east-1',
  resources: ['arn:aws:events:us-east-1:000000000000:rule/bench-schedule'],
  detail: {},
});

async function main() {
  const startedAt = Date.now();
  for (let tick = 1; !stopped; tick++) {
    if (role === 'schedule') {
      const summary = await handler(scheduleEvent(), context());
      process.send({
        type: 'schedule',
        refreshed: Array.isArray(summary.refreshed) ? summary.refreshed.length : 0,
        failed: Array.isArray(summary.failed) ? summary.failed.length : 1,
      });
    } else {
      const t0 = performance.now();
      const body = await handler({ appid }, context());
      process.send({
        type: 'token',
        token: body.access_token,
        expiresAt: body.expires_at,
        error: body.error ? body.error.code : undefined,
        ms: performance.now() - t0,
      });
    }
    await sleep(startedAt + tick * intervalMs - Date.now());
  }
  process.exit(0);
}

main().catch((err) => {
  process.stderr.write(`worker-steady ${role}: ${err.stack || err}\n`);
  process.exit(1);
});
process.send('ready');
