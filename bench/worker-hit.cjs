'use strict';
/**
 * Hit-path worker: plain node requiring the deployable bundle, as Lambda does. Times sequential
 * direct invokes `{appid}` of dist/index.js's handler with process.hrtime.bigint().
 *
 *   node bench/worker-hit.cjs memory  — warm memory hits (the record is in this instance's memory)
 *   node bench/worker-hit.cjs shared  — MEMORY_CACHE_SECONDS=0: every call reads Memcached
 *   node bench/worker-hit.cjs tls     — the same over TLS and the text protocol (ElastiCache
 *                                       Serverless), beside a bare TLS connection's gets
 *
 * Both time raw memjs gets of a ~300-byte value in alternating blocks, in the same process: the
 * reference the hits are measured against. stdout (the service's log lines) is a pipe that the parent
 * drains, as the Lambda runtime does.
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
const { handler } = require(process.env.BENCH_DIST || path.join(__dirname, '..', 'dist', 'index.js'));

const event = { appid };
/**
 * Between two invocations the Lambda runtime posts the answer and asks the runtime API for the next
 * event (GET /2018-06-01/runtime/invocation/next), an HTTP exchange on loopback with the process that
 * also reads the function's stdout. BENCH_RUNTIME_API names the parent's stand-in for that API: each
 * invocation here starts after such an exchange, as in Lambda. Without it, each starts from a fresh
 * event-loop turn (setImmediate), back to back: the log lines of one are written while the next runs.
 * Either way the gap is outside the timed region, and the raw gets get the same gap.
 */
const runtimeApi = process.env.BENCH_RUNTIME_API;
const agent = runtimeApi ? new (require('node:http').Agent)({ keepAlive: true, maxSockets: 1 }) : null;
const nextTurn = () => new Promise((resolve) => setImmediate(resolve));
function nextEvent() {
  if (!runtimeApi) return nextTurn();
  return new Promise((resolve, reject) => {
    const req = require('node:http').get(
      `${runtimeApi}/2018-06-01/runtime/invocation/next`,
      { agent },
      (res) => {
        res.resume();
        res.once('end', resolve);
      },
    );
    req.once('error', reject);
  });
}
const context = () => ({ awsRequestId: randomUUID(), getRemainingTimeInMillis: () => 10_000 });

async function timeHandler(samples, n) {
  for (let i = 0; i < n; i++) {
    await nextEvent();
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
    await nextEvent();
    const t0 = process.hrtime.bigint();
    const { value } = await client.get(key);
    const t1 = process.hrtime.bigint();
    if (!value) throw new Error('raw get found no value');
    if (samples) samples.push(Number(t1 - t0) / 1000);
  }
}

/**
 * The reference client: memjs with the store's settings (lib/store/memcached.ts), or for `tls` one
 * bare TLS text-protocol connection (local/raw-memcached.cjs).
 */
async function rawClient() {
  if (mode === 'tls') {
    const { connectRaw } = require(path.join(__dirname, '..', 'local', 'raw-memcached.cjs'));
    const [host, port] = process.env.MEMCACHED_SERVERS.split(':');
    const ca = require('node:fs').readFileSync(process.env.NODE_EXTRA_CA_CERTS, 'utf8');
    const raw = await connectRaw({ host, port: Number(port), tls: { ca, servername: host } });
    return {
      set: (key, value, { expires }) => raw.set(key, value, expires),
      get: async (key) => ({ value: await raw.get(key) }),
      close: () => raw.close(),
    };
  }
  const memjs = require('memjs');
  return memjs.Client.create(process.env.MEMCACHED_SERVERS, {
    retries: 1,
    failover: false,
    timeout: 60,
    conntimeout: 60,
    keepAlive: true,
    expires: 0,
    logger: { log: () => {} },
  });
}

async function main() {
  const handlerSamples = [];
  const rawSamples = [];
  const client = await rawClient();
  // A value the size of a token record.
  const rawKey = `${process.env.CACHE_KEY_PREFIX}:raw-300`;
  await client.set(rawKey, 'x'.repeat(300), { expires: 3600 });
  await timeHandler(null, WARMUP);
  await timeRawGet(client, rawKey, null, WARMUP);
  // Alternate blocks so that drift (CPU frequency, the parent draining logs) hits both alike; the raw
  // gets of the memory-hit worker are the same reference, measured beside its hits.
  const rawPerBlock = mode === 'memory' ? BLOCK / 4 : BLOCK;
  for (let done = 0; done < ITERATIONS; done += BLOCK) {
    const n = Math.min(BLOCK, ITERATIONS - done);
    await timeHandler(handlerSamples, n);
    await timeRawGet(client, rawKey, rawSamples, Math.ceil((n * rawPerBlock) / BLOCK));
  }
  client.close();
  agent?.destroy();
  // Exit once the last log lines are written.
  process.send({ handlerSamples, rawSamples }, () => process.stdout.write('', () => process.exit(0)));
}

main().catch((err) => {
  process.stderr.write(`worker-hit ${mode}: ${err.stack || err}\n`);
  process.exit(1);
});
