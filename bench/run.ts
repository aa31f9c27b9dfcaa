/**
 * `npm run bench`: the benchmark of the deployable bundle (dist/index.js, built just before).
 *
 * It starts its own memcached and WeChat simulators, runs every measured piece of code in child
 * processes under plain `node` (bench/worker-*.cjs require dist/ as Lambda does), prints a table
 * and writes bench/results/latest.json. Not a test: it reports, it does not fail on a missed target.
 *
 * Scenarios (each with its own cache-key prefix and, where tokens are counted, its own simulator):
 *   hit path    sequential direct invokes: warm memory hits; Memcached hits (MEMORY_CACHE_SECONDS=0)
 *               beside raw memjs gets of a ~300-byte value, in alternating blocks of one process; each
 *               call after a /next exchange with this process (the runtime API's stand-in, which also
 *               drains the worker's stdout, as in Lambda), and once more back to back for comparison
 *   cold start  fresh node processes: require(dist) + first get_token from a warm Memcached,
 *               with credentials from the environment and from a (local) Secrets Manager secret
 *   cold storm  4 processes × 25 cold instances on an empty cache: this product vs the seeds'
 *               algorithm (get → fetch → set, no lock)
 *   steady      20-second tokens, the schedule every second and user traffic from two processes:
 *               upstream fetches per token lifetime, scaled to a 7200-second day
 *
 * Environment: BENCH_STEADY_SECONDS (default 60), BENCH_COLD_RUNS (default 15).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { type MemcachedProcess, startMemcached } from '../local/memcached-server.ts';
import { startLocalSecretsManager } from '../local/stand-ins/secrets-manager-endpoint.ts';
import { startWeChatSimulator, type WeChatSimulator } from '../local/stand-ins/wechat-simulator.ts';
import { createTestCa } from '../local/test-ca.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const BENCH = join(ROOT, 'bench');
/** The bundle measured: dist/ by default; BENCH_DIST names another build (a before/after comparison). */
const DIST = process.env.BENCH_DIST ?? join(ROOT, 'dist', 'index.js');
const RESULTS = join(BENCH, 'results', 'latest.json');

const APPID = 'wx0123456789abcdef';
const SECRET = `bench-secret-${randomBytes(8).toString('hex')}`;
const RUN = randomBytes(3).toString('hex');

const MEMORY_HITS = 20_000;
const MEMORY_WARMUP = 2_000;
const SHARED_HITS = 5_000;
const SHARED_WARMUP = 1_000;
const COLD_RUNS = Number(process.env.BENCH_COLD_RUNS ?? 15);
const STORM_PROCESSES = 4;
const STORM_CALLERS = 25;
const STEADY_LIFETIME_S = 20;
const STEADY_SECONDS = Number(process.env.BENCH_STEADY_SECONDS ?? 60);
const STEADY_SCHEDULE_MS = 1_000;
const STEADY_USER_MS = 20;
const DAY_S = 86_400;
const WECHAT_LIFETIME_S = 7_200;

const TARGET = {
  memoryOverRaw: 0.3,
  sharedOverRaw: 1.5,
  coldStartMs: 30,
  bundleBytes: 60 * 1024,
};

// ---- helpers -------------------------------------------------------------------------------------

const log = (line: string) => process.stdout.write(`${line}\n`);

/** The children get a clean environment: nothing of the caller's WeChat, cache or AWS settings. */
function childEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (
      /^(WECHAT_|MEMCACHED_|CACHE_KEY_PREFIX$|AWS_|LOG_LEVEL$|POWERTOOLS_|NODE_OPTIONS$|MEMORY_CACHE_)/.test(
        name,
      )
    )
      continue;
    env[name] = value;
  }
  return { ...env, BENCH_DIST: DIST, ...extra };
}

interface Worker {
  child: ChildProcess;
  /** Resolves with the exit code. */
  exited: Promise<number | null>;
  /** Service log lines seen on stdout, by `source` (memory, cache, wechat, peer, stale). */
  sources: Record<string, number>;
  stdoutLines: string[];
  stderr: () => string;
}

/**
 * Spawns `node bench/<script>` with an IPC channel. Its stdout (the service's JSON logs) goes to a
 * pipe drained and tallied here, or — for the latency scenarios — to a file, so that each log line
 * costs the child one write(2) and never wakes this process up in the middle of a measurement.
 */
function startWorker(
  script: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  options: { keepLines?: boolean; stdoutToFile?: boolean } = {},
): Worker {
  const file = options.stdoutToFile
    ? join(tmpdir(), `wts-bench-${process.pid}-${randomBytes(4).toString('hex')}.log`)
    : undefined;
  const fd = file ? openSync(file, 'w') : undefined;
  const child = spawn(process.execPath, [join(BENCH, script), ...args], {
    env,
    stdio: ['ignore', fd ?? 'pipe', 'pipe', 'ipc'],
  });
  if (fd !== undefined) closeSync(fd);
  const sources: Record<string, number> = {};
  const stdoutLines: string[] = [];
  let pending = '';
  let stderr = '';
  const onLine = (line: string) => {
    const match = /"source":"([a-z]+)"/.exec(line);
    if (match?.[1] && line.includes('"event":"invocation"')) sources[match[1]] = (sources[match[1]] ?? 0) + 1;
    if (options.keepLines) stdoutLines.push(line);
  };
  const onChunk = (chunk: string) => {
    pending += chunk;
    let end = pending.indexOf('\n');
    while (end >= 0) {
      onLine(pending.slice(0, end));
      pending = pending.slice(end + 1);
      end = pending.indexOf('\n');
    }
  };
  child.stdout?.setEncoding('utf8').on('data', onChunk);
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    if (stderr.length < 8_000) stderr += chunk;
  });
  const exited = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => {
      if (file) {
        onChunk(readFileSync(file, 'utf8'));
        rmSync(file, { force: true });
      }
      resolve(code);
    }),
  );
  return { child, exited, sources, stdoutLines, stderr: () => stderr };
}

function nextMessage<T>(worker: Worker, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onExit = (code: number | null) =>
      reject(
        new Error(`${what}: worker exited with ${code} before answering: ${worker.stderr().slice(0, 800)}`),
      );
    worker.child.once('exit', onExit);
    worker.child.once('message', (message) => {
      worker.child.off('exit', onExit);
      resolve(message as T);
    });
  });
}

function percentile(sorted: number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[rank]!;
}

function stats(samples: number[]) {
  const sorted = [...samples].sort((a, b) => a - b);
  return {
    n: sorted.length,
    p50: percentile(sorted, 0.5),
    p90: percentile(sorted, 0.9),
    p99: percentile(sorted, 0.99),
    min: sorted[0] ?? Number.NaN,
    max: sorted[sorted.length - 1] ?? Number.NaN,
  };
}

const round = (value: number, digits = 1) => Number(value.toFixed(digits));
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function baseEnv(simulator: WeChatSimulator, memcached: MemcachedProcess, prefix: string) {
  return {
    WECHAT_APPID: APPID,
    WECHAT_APPSECRET: SECRET,
    WECHAT_API_BASE_URL: simulator.baseUrl,
    MEMCACHED_SERVERS: memcached.address,
    CACHE_KEY_PREFIX: prefix,
  };
}

// ---- scenarios -----------------------------------------------------------------------------------

interface HitWorkerResult {
  handlerSamples: number[];
  rawSamples: number[];
}

/**
 * The runtime API's /next, as the worker's invocations wait for it between calls (worker-hit.cjs):
 * answered at once, by this process, which also drains the worker's stdout, as Lambda's runtime API
 * server reads the function's output.
 */
async function startRuntimeApi(): Promise<{ url: string; close: () => Promise<void> }> {
  const server = createServer((_req, res) => res.end('{}'));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** `backToBack`: each invocation starts right after the previous one, without the runtime API between. */
async function runHitWorker(mode: 'memory' | 'shared' | 'tls', env: NodeJS.ProcessEnv, backToBack = false) {
  const runtimeApi = backToBack ? undefined : await startRuntimeApi();
  try {
    // stdout is a pipe this process drains, as the Lambda runtime reads a function's output.
    const worker = startWorker(
      'worker-hit.cjs',
      [mode],
      runtimeApi ? { ...env, BENCH_RUNTIME_API: runtimeApi.url } : env,
    );
    const result = await nextMessage<HitWorkerResult>(worker, `hit path (${mode})`);
    await worker.exited;
    return { ...result, sources: worker.sources };
  } finally {
    await runtimeApi?.close();
  }
}

/** One memory-hit worker and one Memcached-hit worker, each with raw gets timed beside its hits. */
async function hitPath(memcached: MemcachedProcess) {
  const simulator = await startWeChatSimulator({ apps: [{ appid: APPID, secret: SECRET }] });
  try {
    const env = baseEnv(simulator, memcached, `hit-${RUN}`);
    const memory = await runHitWorker(
      'memory',
      childEnv({ ...env, BENCH_ITERATIONS: String(MEMORY_HITS), BENCH_WARMUP: String(MEMORY_WARMUP) }),
    );
    const sharedEnv = childEnv({
      ...env,
      MEMORY_CACHE_SECONDS: '0',
      BENCH_ITERATIONS: String(SHARED_HITS),
      BENCH_WARMUP: String(SHARED_WARMUP),
    });
    const shared = await runHitWorker('shared', sharedEnv);
    const backToBack = await runHitWorker('shared', sharedEnv, true);
    const memoryStats = stats(memory.handlerSamples);
    const memoryRaw = stats(memory.rawSamples);
    const sharedStats = stats(shared.handlerSamples);
    const sharedRaw = stats(shared.rawSamples);
    return {
      memoryHit: { ...memoryStats, sources: memory.sources },
      memoryRawGet: { ...memoryRaw, valueBytes: 300 },
      memoryOverRawP50: memoryStats.p50 / memoryRaw.p50,
      sharedHit: { ...sharedStats, sources: shared.sources },
      rawGet: { ...sharedRaw, valueBytes: 300 },
      sharedOverRawP50: sharedStats.p50 / sharedRaw.p50,
      backToBack: {
        sharedHit: stats(backToBack.handlerSamples),
        rawGet: stats(backToBack.rawSamples),
        sharedOverRawP50: stats(backToBack.handlerSamples).p50 / stats(backToBack.rawSamples).p50,
      },
      upstreamFetches: simulator.calls.token + simulator.calls.stableToken,
    };
  } finally {
    await simulator.close();
  }
}

/**
 * ElastiCache Serverless locally: a TLS-only memcached speaking the text protocol, with a CA made for
 * the run. A Memcached hit over TLS beside a bare TLS connection's gets, and cold starts over TLS.
 */
async function tlsPath() {
  const ca = createTestCa();
  const cert = ca.issue(['localhost']);
  const memcached = await startMemcached({
    protocol: 'ascii',
    tls: { ...cert, caFile: ca.caFile, serverName: 'localhost' },
  });
  const simulator = await startWeChatSimulator({ apps: [{ appid: APPID, secret: SECRET }] });
  try {
    const env = {
      ...baseEnv(simulator, memcached, `tls-${RUN}`),
      MEMCACHED_SERVERS: `localhost:${memcached.port}`,
      MEMCACHED_TLS: 'true',
      MEMCACHED_PROTOCOL: 'text',
      NODE_EXTRA_CA_CERTS: ca.caFile,
    };
    const hit = await runHitWorker(
      'tls',
      childEnv({
        ...env,
        MEMORY_CACHE_SECONDS: '0',
        BENCH_ITERATIONS: String(SHARED_HITS),
        BENCH_WARMUP: String(SHARED_WARMUP),
      }),
    );
    const hitStats = stats(hit.handlerSamples);
    const rawStats = stats(hit.rawSamples);
    const cold: Awaited<ReturnType<typeof coldOnce>>[] = [];
    const coldEnv = childEnv({ ...env, BENCH_APPID: APPID });
    await coldOnce(coldEnv); // the record exists from the hit worker; this warms the page cache
    for (let i = 0; i < COLD_RUNS; i++) cold.push(await coldOnce(coldEnv));
    return {
      sharedHit: { ...hitStats, sources: hit.sources },
      rawGet: { ...rawStats, valueBytes: 300 },
      sharedOverRawP50: hitStats.p50 / rawStats.p50,
      coldStart: {
        runs: cold.length,
        total: stats(cold.map((r) => r.totalMs)),
        require: stats(cold.map((r) => r.requireMs)),
        firstCall: stats(cold.map((r) => r.firstCallMs)),
        sources: [...new Set(cold.map((r) => r.source))],
      },
    };
  } finally {
    await simulator.close();
    await memcached.stop();
    ca.remove();
  }
}

interface ColdResult {
  bench: 'cold';
  bootMs: number;
  requireMs: number;
  firstCallMs: number;
  totalMs: number;
  ok: boolean;
  error?: string;
  sdkLoaded: boolean;
  modulesLoaded: number;
}

async function coldOnce(env: NodeJS.ProcessEnv) {
  const spawnedAt = performance.now();
  const worker = startWorker('worker-cold.cjs', [], env, { keepLines: true });
  const code = await worker.exited;
  const wallMs = performance.now() - spawnedAt;
  const line = worker.stdoutLines.find((l) => l.startsWith('{"bench":"cold"'));
  if (code !== 0 || !line)
    throw new Error(`cold-start worker failed (${code}): ${worker.stderr().slice(0, 800)}`);
  const result = JSON.parse(line) as ColdResult;
  if (!result.ok) throw new Error(`cold-start worker got no token: ${result.error}`);
  return { ...result, wallMs, source: Object.keys(worker.sources).join(',') };
}

async function coldStart(memcached: MemcachedProcess) {
  const simulator = await startWeChatSimulator({ apps: [{ appid: APPID, secret: SECRET }] });
  const secrets = await startLocalSecretsManager({
    secrets: { 'bench/wechat': JSON.stringify({ appid: APPID, secret: SECRET }) },
  });
  try {
    const common = {
      WECHAT_API_BASE_URL: simulator.baseUrl,
      MEMCACHED_SERVERS: memcached.address,
      CACHE_KEY_PREFIX: `cold-${RUN}`,
      BENCH_APPID: APPID,
    };
    const localEnv = childEnv({ ...common, WECHAT_APPID: APPID, WECHAT_APPSECRET: SECRET });
    const secretEnv = childEnv({ ...common, WECHAT_SECRET_ID: 'bench/wechat', ...secrets.env() });
    // An earlier run writes the record; every measured run then finds it in Memcached.
    const first = await coldOnce(localEnv);
    const fetchesBefore = simulator.calls.token;
    secrets.resetCounters();
    const local: Awaited<ReturnType<typeof coldOnce>>[] = [];
    const secret: Awaited<ReturnType<typeof coldOnce>>[] = [];
    for (let i = 0; i < COLD_RUNS; i++) {
      local.push(await coldOnce(localEnv));
      secret.push(await coldOnce(secretEnv));
    }
    const summarize = (runs: typeof local) => ({
      runs: runs.length,
      total: stats(runs.map((r) => r.totalMs)),
      require: stats(runs.map((r) => r.requireMs)),
      firstCall: stats(runs.map((r) => r.firstCallMs)),
      nodeBoot: stats(runs.map((r) => r.bootMs)),
      processWall: stats(runs.map((r) => r.wallMs)),
      sdkLoadedRuns: runs.filter((r) => r.sdkLoaded).length,
      sources: [...new Set(runs.map((r) => r.source))],
      modulesLoaded: runs[0]?.modulesLoaded,
    });
    return {
      firstRunSource: first.source,
      local: summarize(local),
      secretsManager: { ...summarize(secret), getSecretValueCalls: secrets.calls.getSecretValue },
      upstreamFetchesDuringMeasuredRuns: simulator.calls.token - fetchesBefore,
    };
  } finally {
    await secrets.close();
    await simulator.close();
  }
}

/** What requiring the AWS SDK client alone costs in a fresh process (the price a cache hit must not pay). */
async function sdkRequireCost() {
  const script =
    "const t=performance.now();require('@aws-sdk/client-secrets-manager');" +
    'process.stdout.write(String(performance.now()-t))';
  const runs: number[] = [];
  for (let i = 0; i < 5; i++) {
    const child = spawn(process.execPath, ['-e', script], {
      cwd: ROOT,
      env: childEnv({}),
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => {
      out += c;
    });
    await new Promise((resolve) => child.once('exit', resolve));
    runs.push(Number(out));
  }
  return stats(runs);
}

interface StormMessage {
  results: Array<{ token?: string; error?: string; ms: number }>;
}

async function storm(kind: 'product' | 'seeds', memcached: MemcachedProcess) {
  const simulator = await startWeChatSimulator({ apps: [{ appid: APPID, secret: SECRET }] });
  try {
    const env = childEnv({
      ...baseEnv(simulator, memcached, `storm-${kind}-${RUN}`),
      SEEDS_KEY: `seeds-${RUN}:access_token:${APPID}`,
    });
    const script = kind === 'product' ? 'worker-storm.cjs' : 'worker-seeds.cjs';
    const workers = Array.from({ length: STORM_PROCESSES }, () =>
      startWorker(script, [String(STORM_CALLERS)], env),
    );
    await Promise.all(workers.map((w) => nextMessage<string>(w, `${kind} storm ready`)));
    const answers = workers.map((w) => nextMessage<StormMessage>(w, `${kind} storm`));
    const startedAt = performance.now();
    for (const w of workers) w.child.send('go');
    const results = (await Promise.all(answers)).flatMap((m) => m.results);
    const elapsedMs = performance.now() - startedAt;
    await Promise.all(workers.map((w) => w.exited));
    const tokens = results.map((r) => r.token).filter((t): t is string => typeof t === 'string');
    const invalidated = tokens.filter((t) => simulator.tokenStatus(t) !== 'valid').length;
    const errors: Record<string, number> = {};
    for (const r of results) if (r.error) errors[r.error] = (errors[r.error] ?? 0) + 1;
    return {
      callers: results.length,
      // Classic and stable fetches alike (a cache outage may fall back to the stable endpoint).
      upstreamFetches: simulator.calls.token + simulator.calls.stableToken,
      tokensReturned: tokens.length,
      distinctTokens: new Set(tokens).size,
      invalidatedAtEnd: invalidated,
      errors,
      latencyMs: stats(results.map((r) => r.ms)),
      elapsedMs,
    };
  } finally {
    await simulator.close();
  }
}

interface SteadyMessage {
  type: 'token' | 'schedule';
  token?: string;
  expiresAt?: number;
  error?: string;
  refreshed?: number;
  failed?: number;
}

async function steadyState(memcached: MemcachedProcess) {
  const simulator = await startWeChatSimulator({
    apps: [{ appid: APPID, secret: SECRET }],
    tokenLifetimeSeconds: STEADY_LIFETIME_S,
  });
  const env = childEnv(baseEnv(simulator, memcached, `steady-${RUN}`));
  const counters = {
    handedOut: 0,
    invalidAtHandout: 0,
    errors: 0,
    scheduleRuns: 0,
    scheduleRefreshes: 0,
    scheduleFailures: 0,
  };
  /** Latest promise (epoch s) made for each token. */
  const promised = new Map<string, number>();
  let measuring = false;
  let firstToken: () => void = () => {};
  const gotFirstToken = new Promise<void>((resolve) => {
    firstToken = resolve;
  });
  const onMessage = (message: SteadyMessage | string) => {
    if (typeof message === 'string') return;
    if (message.type === 'schedule') {
      if (!measuring) return;
      counters.scheduleRuns++;
      counters.scheduleRefreshes += message.refreshed ?? 0;
      counters.scheduleFailures += message.failed ?? 0;
      return;
    }
    firstToken();
    if (!measuring) return;
    if (!message.token) {
      counters.errors++;
      return;
    }
    // Checked the moment it arrives: was it still valid when handed out?
    counters.handedOut++;
    if (simulator.tokenStatus(message.token) !== 'valid') counters.invalidAtHandout++;
    promised.set(message.token, Math.max(promised.get(message.token) ?? 0, message.expiresAt ?? 0));
  };
  const workers = [
    startWorker('worker-steady.cjs', ['schedule', String(STEADY_SCHEDULE_MS)], env),
    startWorker('worker-steady.cjs', ['user', String(STEADY_USER_MS)], env),
    startWorker('worker-steady.cjs', ['user', String(STEADY_USER_MS)], env),
  ];
  try {
    for (const w of workers) w.child.on('message', onMessage);
    await gotFirstToken;
    // Counting starts once the first token exists: from here on every fetch is a refresh.
    measuring = true;
    const upstream = () => simulator.calls.token + simulator.calls.stableToken;
    const fetchesBefore = upstream();
    const startedAt = performance.now();
    await sleep(STEADY_SECONDS * 1000);
    const fetches = upstream() - fetchesBefore;
    const seconds = (performance.now() - startedAt) / 1000;
    measuring = false;
    for (const w of workers) w.child.send('stop');
    await Promise.all(workers.map((w) => w.exited));
    let promisesBroken = 0;
    for (const [token, expiresAt] of promised) {
      const info = simulator.tokenInfo(token);
      if (!info || expiresAt * 1000 > info.deadAtMs) promisesBroken++;
    }
    // When each token handed out was issued: the refresh period as WeChat saw it.
    const issued = [...promised.keys()]
      .map((token) => simulator.tokenInfo(token)?.issuedAtMs)
      .filter((t): t is number => t !== undefined)
      .sort((a, b) => a - b);
    const intervals = issued.slice(1).map((t, i) => (t - issued[i]!) / 1000);
    const lifetimes = seconds / STEADY_LIFETIME_S;
    const perLifetime = fetches / lifetimes;
    return {
      tokenLifetimeSeconds: STEADY_LIFETIME_S,
      seconds,
      lifetimesObserved: lifetimes,
      upstreamFetches: fetches,
      fetchesPerLifetime: perLifetime,
      fetchesPerDay: perLifetime * (DAY_S / WECHAT_LIFETIME_S),
      ...counters,
      distinctTokens: promised.size,
      promisesBroken,
      refreshIntervalsSeconds: intervals.map((i) => round(i, 2)),
      meanRefreshIntervalSeconds: intervals.length
        ? intervals.reduce((a, b) => a + b, 0) / intervals.length
        : Number.NaN,
      sources: workers.slice(1).reduce<Record<string, number>>((all, w) => {
        for (const [k, v] of Object.entries(w.sources)) all[k] = (all[k] ?? 0) + v;
        return all;
      }, {}),
    };
  } finally {
    for (const w of workers) if (w.child.exitCode === null) w.child.kill('SIGKILL');
    await simulator.close();
  }
}

/** Bundle size, and what it is made of (esbuild metafile of the same build options). */
async function bundle() {
  const bytes = statSync(DIST).size;
  const { build } = await import('esbuild');
  const optionsModule = join(ROOT, 'scripts', 'esbuild-options.mjs');
  const { esbuildOptions, lazyTransportPlugin } = (await import(pathToFileURL(optionsModule).href)) as {
    esbuildOptions: Record<string, unknown>;
    lazyTransportPlugin: import('esbuild').Plugin;
  };
  const result = await build({
    ...esbuildOptions,
    plugins: [lazyTransportPlugin],
    entryPoints: [join(ROOT, 'handler', 'index.ts')],
    outfile: join(ROOT, 'dist', 'index.js'),
    write: false,
    metafile: true,
    logLevel: 'silent',
  });
  const inputs = Object.values(result.metafile.outputs)[0]?.inputs ?? {};
  const byPackage: Record<string, number> = {};
  for (const [file, { bytesInOutput }] of Object.entries(inputs)) {
    const match = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(file);
    const name =
      match?.[1] ?? (file.startsWith('lib/') || file.startsWith('handler/') ? 'service code' : file);
    byPackage[name] = (byPackage[name] ?? 0) + bytesInOutput;
  }
  const composition = Object.entries(byPackage)
    .sort((a, b) => b[1] - a[1])
    .map(([name, size]) => ({ name, bytes: size }));
  const lazyFile = join(DIST, '..', 'wechat-http.js');
  // A build from before the HTTP transport was split off has no such file.
  const lazyBytes = existsSync(lazyFile) ? statSync(lazyFile).size : 0;
  return { bytes, kib: bytes / 1024, composition, lazyBytes };
}

// ---- report --------------------------------------------------------------------------------------

type Row = [figure: string, value: string, target: string, ok: string];

function verdict(pass: boolean | undefined): string {
  if (pass === undefined) return '';
  return pass ? 'ok' : 'MISS';
}

function table(rows: Row[]): string {
  const header: Row = ['figure', 'value', 'target', 'ok?'];
  const all = [header, ...rows];
  const widths = header.map((_, i) => Math.max(...all.map((r) => r[i]!.length)));
  const line = (r: Row) => `| ${r.map((cell, i) => cell.padEnd(widths[i]!)).join(' | ')} |`;
  const rule = `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`;
  return [line(header), rule, ...rows.map(line)].join('\n');
}

async function main() {
  const startedAt = performance.now();
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
  const loadAtStart = loadavg()[0]!;
  log(
    `bench: ${relative(ROOT, DIST)} on node ${process.version}, ${cpus().length} cores (${cpus()[0]?.model ?? '?'}), ` +
      `load average ${loadAtStart.toFixed(2)}`,
  );
  if (loadAtStart > 0.5 * cpus().length)
    log('  (the machine is busy: latency figures will be noisy; run again on an idle machine)');
  const memcached = await startMemcached();
  let report: Record<string, unknown>;
  try {
    log('  hit path …');
    const hit = await hitPath(memcached);
    log('  cold start …');
    const cold = await coldStart(memcached);
    log('  TLS (text protocol, as ElastiCache Serverless) …');
    const tls = await tlsPath();
    const sdk = await sdkRequireCost();
    log('  cold storm …');
    const stormProduct = await storm('product', memcached);
    const stormSeeds = await storm('seeds', memcached);
    log(`  steady state (${STEADY_SECONDS} s) …`);
    const steady = await steadyState(memcached);
    const size = await bundle();
    const durationS = (performance.now() - startedAt) / 1000;

    const us = (v: number) => `${v.toFixed(1)} µs`;
    const ms = (v: number) => `${v.toFixed(1)} ms`;
    const rows: Row[] = [
      ['memory hit p50 / p99', `${us(hit.memoryHit.p50)} / ${us(hit.memoryHit.p99)}`, '', ''],
      [
        'memory hit / raw get (p50)',
        `${hit.memoryOverRawP50.toFixed(2)}× (raw ${us(hit.memoryRawGet.p50)} in that process)`,
        `≤ ${TARGET.memoryOverRaw}×`,
        verdict(hit.memoryOverRawP50 <= TARGET.memoryOverRaw),
      ],
      ['Memcached hit p50 / p99', `${us(hit.sharedHit.p50)} / ${us(hit.sharedHit.p99)}`, '', ''],
      ['raw memjs get p50 / p99 (300 B)', `${us(hit.rawGet.p50)} / ${us(hit.rawGet.p99)}`, 'reference', ''],
      [
        'Memcached hit / raw get (p50)',
        `${hit.sharedOverRawP50.toFixed(2)}×`,
        `≤ ${TARGET.sharedOverRaw}×`,
        verdict(hit.sharedOverRawP50 <= TARGET.sharedOverRaw),
      ],
      [
        'the same, back to back (no runtime API between)',
        `${hit.backToBack.sharedOverRawP50.toFixed(2)}× (${us(hit.backToBack.sharedHit.p50)} / ${us(hit.backToBack.rawGet.p50)})`,
        '',
        '',
      ],
      [
        'Memcached hit over TLS (text) / raw TLS get (p50)',
        `${tls.sharedOverRawP50.toFixed(2)}× (${us(tls.sharedHit.p50)} / ${us(tls.rawGet.p50)})`,
        `≤ ${TARGET.sharedOverRaw}×`,
        verdict(tls.sharedOverRawP50 <= TARGET.sharedOverRaw),
      ],
      [
        'cold start over TLS, warm cache (median)',
        `${ms(tls.coldStart.total.p50)} (require ${ms(tls.coldStart.require.p50)} + call ${ms(tls.coldStart.firstCall.p50)})`,
        `≤ ${TARGET.coldStartMs} ms`,
        verdict(tls.coldStart.total.p50 <= TARGET.coldStartMs),
      ],
      [
        'cold start, env credentials (median)',
        `${ms(cold.local.total.p50)} (require ${ms(cold.local.require.p50)} + call ${ms(cold.local.firstCall.p50)})`,
        `≤ ${TARGET.coldStartMs} ms`,
        verdict(cold.local.total.p50 <= TARGET.coldStartMs),
      ],
      [
        'cold start, Secrets Manager (median)',
        `${ms(cold.secretsManager.total.p50)} (require ${ms(cold.secretsManager.require.p50)} + call ${ms(cold.secretsManager.firstCall.p50)})`,
        `≤ ${TARGET.coldStartMs} ms`,
        verdict(cold.secretsManager.total.p50 <= TARGET.coldStartMs),
      ],
      [
        '  AWS SDK loaded on the cache-hit path',
        `${cold.secretsManager.sdkLoadedRuns}/${cold.secretsManager.runs} runs, ${cold.secretsManager.getSecretValueCalls} GetSecretValue`,
        '0 runs',
        verdict(cold.secretsManager.sdkLoadedRuns === 0),
      ],
      ['  (requiring the SDK client alone)', ms(sdk.p50), 'reference', ''],
      [
        'bundle dist/index.js',
        `${size.bytes} B (${size.kib.toFixed(1)} KiB; + dist/wechat-http.js ${(size.lazyBytes / 1024).toFixed(1)} KiB, loaded on the first WeChat call)`,
        `≤ ${TARGET.bundleBytes / 1024} KiB`,
        verdict(size.bytes <= TARGET.bundleBytes),
      ],
      [
        `cold storm ${STORM_PROCESSES}×${STORM_CALLERS}, this product`,
        `${stormProduct.upstreamFetches} fetch(es), ${stormProduct.invalidatedAtEnd} invalidated, ${Object.keys(stormProduct.errors).length ? `errors ${JSON.stringify(stormProduct.errors)}` : 'no errors'}`,
        '1 fetch, 0 invalidated',
        verdict(
          stormProduct.upstreamFetches === 1 &&
            stormProduct.invalidatedAtEnd === 0 &&
            stormProduct.tokensReturned === stormProduct.callers,
        ),
      ],
      [
        `cold storm ${STORM_PROCESSES}×${STORM_CALLERS}, seeds' algorithm`,
        `${stormSeeds.upstreamFetches} fetches, ${stormSeeds.invalidatedAtEnd} invalidated`,
        'reference',
        '',
      ],
      [
        `steady: fetches per ${STEADY_LIFETIME_S}-s token life`,
        `${steady.fetchesPerLifetime.toFixed(2)} (${steady.upstreamFetches} in ${steady.seconds.toFixed(0)} s; refresh every ${steady.meanRefreshIntervalSeconds.toFixed(1)} s)`,
        '',
        '',
      ],
      [
        'steady: fetches per simulated day',
        steady.fetchesPerDay.toFixed(1),
        '≤ 27 (window = half life), quota 2000',
        verdict(steady.fetchesPerDay <= 27),
      ],
      [
        'steady: invalid at hand-out',
        `${steady.invalidAtHandout} of ${steady.handedOut}`,
        '0',
        verdict(steady.invalidAtHandout === 0 && steady.errors === 0),
      ],
      [
        'steady: expires_at promises broken',
        `${steady.promisesBroken} of ${steady.distinctTokens} tokens`,
        '0',
        verdict(steady.promisesBroken === 0),
      ],
    ];

    log('');
    log(table(rows));
    log('');
    log(
      `hit path: ${hit.memoryHit.n} memory hits (sources ${JSON.stringify(hit.memoryHit.sources)}), ` +
        `${hit.sharedHit.n} Memcached hits (sources ${JSON.stringify(hit.sharedHit.sources)}), ` +
        `${hit.memoryRawGet.n}+${hit.rawGet.n} raw gets in alternating blocks; sequential, after warm-up; each call after a /next exchange with the parent, which drains stdout (a pipe)`,
    );
    log(
      `cold start: ${cold.local.runs}+${cold.secretsManager.runs} fresh processes; p90 ${ms(cold.local.total.p90)} / ${ms(cold.secretsManager.total.p90)}; ` +
        `node's own boot before user code ${ms(cold.local.nodeBoot.p50)}, whole process ${ms(cold.local.processWall.p50)} (not counted); ` +
        `served from ${cold.local.sources.join(',')}; upstream fetches during measured runs: ${cold.upstreamFetchesDuringMeasuredRuns}`,
    );
    log(
      `cold storm: product ${stormProduct.distinctTokens} distinct token(s), all served in ${ms(stormProduct.latencyMs.max)}; ` +
        `seeds ${stormSeeds.distinctTokens} distinct tokens, ${stormSeeds.tokensReturned} returned`,
    );
    log(
      `steady: schedule every ${STEADY_SCHEDULE_MS / 1000} s (${steady.scheduleRefreshes} of ${steady.upstreamFetches} fetches by the schedule, the rest by user calls that waited on WeChat), ` +
        `2 user processes every ${STEADY_USER_MS} ms (sources over the run ${JSON.stringify(steady.sources)}); ` +
        `day = ${DAY_S / WECHAT_LIFETIME_S} lifetimes of ${WECHAT_LIFETIME_S} s`,
    );
    log(
      `bundle: ${size.composition
        .slice(0, 6)
        .map((c) => `${c.name} ${(c.bytes / 1024).toFixed(1)} KiB`)
        .join(', ')}`,
    );
    log('');
    log(`load average at the end ${loadavg()[0]!.toFixed(2)} (at the start ${loadAtStart.toFixed(2)})`);
    log(
      `total ${durationS.toFixed(0)} s; reproduce with: npm run bench   (results: ${relative(ROOT, RESULTS)})`,
    );

    report = {
      date: new Date().toISOString(),
      version: pkg.version,
      node: process.version,
      cpus: cpus().length,
      cpuModel: cpus()[0]?.model,
      memoryBytes: totalmem(),
      durationSeconds: durationS,
      loadAverage: { start: loadAtStart, end: loadavg()[0] },
      targets: TARGET,
      hitPath: hit,
      tls,
      coldStart: { ...cold, sdkRequireAloneMs: sdk },
      bundle: size,
      coldStorm: {
        processes: STORM_PROCESSES,
        callersPerProcess: STORM_CALLERS,
        product: stormProduct,
        seeds: stormSeeds,
      },
      steadyState: steady,
      table: rows.map(([figure, value, target, ok]) => ({ figure: figure.trim(), value, target, ok })),
    };
  } finally {
    await memcached.stop();
  }
  mkdirSync(join(BENCH, 'results'), { recursive: true });
  writeFileSync(RESULTS, `${JSON.stringify(report, null, 2)}\n`);
}

await main();
