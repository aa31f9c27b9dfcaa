'use strict';
/**
 * Hit-path worker: plain node requiring the deployable bundle, as Lambda does. Times sequential
 * direct invokes `{appid}` of dist/index.js's handler with process.hrtime.bigint().
 *
 *   node bench/worker-hit.cjs memory  — warm memory hits (the record is in this instance's memory)
 *   node bench/worker-hit.cjs shared  — MEMORY_CACHE_SECONDS=0: every call reads Memcached; raw memjs
 *                                       gets of a ~300-byte value are timed in alternating blocks
 *
 * Configuration comes from the environment (set by bench/run.ts); results go back over IPC.
 */
const path = require('node:path');
const { randomUUID } = require('node:crypto');

const mode = process.argv[2];
const ITERATIONS = Number(process.env.BENCH_ITERATIONS);
const WARMUP = Number(process.env.BENCH_WARMUP);
const BLOCK = 500;
const appid = process.env.WECHAT_APPID;
const { handler } = require(path.join(__dirname, '..', 'dist', 'index.js'));

const event = { appid };
/**
 * Lambda starts each invocation from a fresh event-loop turn; so does this loop (outside the timed
 * region). Without it, a memory hit never leaves the microtask queue, libuv never flushes stdout, and
 * the log lines pile up in memory instead of being written: the timings would leave out the writes.
 */
const nextTurn = () => new Promise((resolve) => setImmediate(resolve));
const context = () => ({ awsRequestId: randomUUID(), getRemainingTimeInMillis: () => 10_000 });

async function timeHandler(samples, n) {
  for (let i = 0; i < n; i++) {
    await nextTurn();
    const ctx = context();
    const t0 = process.hrtime.bigint();
    const body = await handler(event, ctx);
    const t1 = process.hrtime.bigint();
    if (typeof body.access_token !== 'string') throw new Error(`handler answered ${JSON.stringify(body)}`);
    if (samples) samples.push(Number(t1 - t0) / 1000);
  }
}

async function timeRawGet(client, key, samples, n) {
  for (let i = 0; i < n; i++) {
    await nextTurn();
    const t0 = process.hrtime.bigint();
    const { value } = await client.get(key);
    const t1 = process.hrtime.bigint();
    if (!value) throw new Error('raw get found no value');
    if (samples) samples.push(Number(t1 - t0) / 1000);
  }
}

async function main() {
  const handlerSamples = [];
  const rawSamples = [];
  let recordBytes;
  if (mode === 'memory') {
    await timeHandler(null, WARMUP);
    await timeHandler(handlerSamples, ITERATIONS);
  } else {
    const memjs = require('memjs');
    // The same client settings as the service's store (lib/memcached/memcached-store.ts).
    const client = memjs.Client.create(process.env.MEMCACHED_SERVERS, {
      retries: 1,
      failover: false,
      timeout: 0.25,
      conntimeout: 0.5,
      keepAlive: true,
      expires: 0,
      logger: { log: () => {} },
    });
    const rawKey = `${process.env.CACHE_KEY_PREFIX}:raw-300`;
    await client.set(rawKey, 'x'.repeat(300), { expires: 3600 });
    await timeHandler(null, WARMUP);
    await timeRawGet(client, rawKey, null, WARMUP);
    const record = await client.get(`${process.env.CACHE_KEY_PREFIX}:v1:rec:access_token:${appid}`);
    recordBytes = record.value ? record.value.length : null;
    // Alternate blocks so that drift (CPU frequency, the parent draining logs) hits both alike.
    for (let done = 0; done < ITERATIONS; done += BLOCK) {
      const n = Math.min(BLOCK, ITERATIONS - done);
      await timeHandler(handlerSamples, n);
      await timeRawGet(client, rawKey, rawSamples, n);
    }
    client.close();
  }
  // Exit once the last log lines are written.
  process.send({ handlerSamples, rawSamples, recordBytes }, () =>
    process.stdout.write('', () => process.exit(0)),
  );
}

main().catch((err) => {
  process.stderr.write(`worker-hit ${mode}: ${err.stack || err}\n`);
  process.exit(1);
});
