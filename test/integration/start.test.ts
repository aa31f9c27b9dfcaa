/**
 * `npm start` end to end: the local server is spawned as a real process (node --import tsx), its
 * banner is read like a user would read it, and the printed curl commands are replayed.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { createServer, type Server } from 'node:net';
import { request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { startWeChatSimulator, type WeChatSimulator } from '../../local/stand-ins/wechat-simulator.ts';
import { recordChildOutput } from '../support/capture-output.ts';
import { CLIENT_KEY, TEST_APPID, TEST_SECRET } from '../support/secrets.ts';

interface Started {
  child: ChildProcess;
  output: () => string;
  stderr: () => string;
  exited: Promise<number | null>;
}

const running: ChildProcess[] = [];
const cleanups: Array<() => Promise<void>> = [];

afterEach(async () => {
  for (const child of running.splice(0)) if (child.exitCode === null) child.kill('SIGKILL');
  for (const cleanup of cleanups.splice(0)) await cleanup();
});

/** The environment of a user who configured nothing (the test's own WeChat/cache variables removed). */
function bareEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (/^(WECHAT_|MEMCACHED_|CACHE_KEY_PREFIX$|AWS_|PORT$)/.test(name)) continue;
    env[name] = value;
  }
  return { ...env, LOG_LEVEL: 'WARN', ...extra };
}

/** `node --import tsx local/start.ts` itself, or (`viaNpm`) `npm start` as a user types it. */
function start(env: NodeJS.ProcessEnv, viaNpm = false): Started {
  const [command, args] = viaNpm
    ? ['npm', ['start']]
    : [process.execPath, ['--import', 'tsx', 'local/start.ts']];
  const child = spawn(command, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  running.push(child);
  let out = '';
  let err = '';
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    out += chunk;
    recordChildOutput(chunk);
  });
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    err += chunk;
    recordChildOutput(chunk);
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, output: () => out, stderr: () => err, exited };
}

async function waitFor(started: Started, pattern: RegExp, timeoutMs = 20_000): Promise<RegExpExecArray> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const match = pattern.exec(started.output());
    if (match) return match;
    if (started.child.exitCode !== null) break;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`no ${pattern} in the output of local/start.ts; stderr: ${started.stderr().slice(0, 500)}`);
}

function exitWithin(started: Started, ms: number): Promise<number | null | 'timeout'> {
  return Promise.race([
    started.exited,
    new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), ms)),
  ]);
}

/** Every process below `pid` (children, grandchildren…), from `ps`. */
function descendants(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const line of execFileSync('ps', ['-A', '-o', 'pid=,ppid='], { encoding: 'utf8' }).split('\n')) {
    const [child, parent] = line.trim().split(/\s+/).map(Number);
    if (!child || !parent) continue;
    children.set(parent, [...(children.get(parent) ?? []), child]);
  }
  const found: number[] = [];
  const queue = [pid];
  while (queue.length > 0) {
    for (const child of children.get(queue.shift()!) ?? []) {
      found.push(child);
      queue.push(child);
    }
  }
  return found;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Whether something still listens on `port` (a listen of our own there fails). */
async function portInUse(port: number): Promise<boolean> {
  const probe = createServer();
  return new Promise<boolean>((resolve) => {
    probe.once('error', () => resolve(true));
    probe.listen(port, '127.0.0.1', () => probe.close(() => resolve(false)));
  });
}

/** Polls `condition` every 50 ms for up to `timeoutMs`; the last answer. */
async function eventually(condition: () => boolean | Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await condition()) return true;
    if (Date.now() >= deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

const TOKEN_CURL =
  /curl -H '(Authorization: Bearer ([^']+))' '(http:\/\/127\.0\.0\.1:(\d+)\/token\?appid=(wx[0-9a-f]{16}))'/;

describe('npm start (local/start.ts)', () => {
  it('with no configuration runs the simulator, prints a curl that works, and stops cleanly on SIGINT', async () => {
    const started = start(bareEnv({ PORT: '0' }));
    const [, , key, tokenUrl, port, appid] = await waitFor(started, TOKEN_CURL);
    const banner = started.output();
    expect(banner).toMatch(/simulator at http:\/\/127\.0\.0\.1:\d+/);
    expect(banner).toMatch(/in-process/);
    expect(Number(port)).toBeGreaterThan(0);
    expect(appid).toBe('wx0123456789abcdef');
    const base = `http://127.0.0.1:${port}`;
    expect(banner).toContain(`curl '${base}/healthz'`);
    expect(banner).toContain(`${base}/jssdk/config`);

    const res = await request(tokenUrl!, { headers: { authorization: `Bearer ${key}` } });
    expect(res.statusCode).toBe(200);
    const body = (await res.body.json()) as Record<string, unknown>;
    expect(Object.keys(body).sort()).toEqual(['access_token', 'expires_at', 'expires_in']);
    expect(typeof body.access_token).toBe('string');
    expect((body.access_token as string).length).toBeGreaterThan(20);
    expect(body.expires_in).toBeGreaterThan(0);
    expect(body.expires_at).toBeGreaterThan(Date.now() / 1000);

    const health = await request(`${base}/healthz`);
    expect(health.statusCode).toBe(200);
    expect(await health.body.json()).toMatchObject({ status: 'ok' });

    // The jssdk curl of the banner, replayed.
    const jssdk = await request(`${base}/jssdk/config`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ appid, url: 'https://example.com/page' }),
    });
    expect(jssdk.statusCode).toBe(200);
    expect(await jssdk.body.json()).toMatchObject({
      appId: appid,
      signature: expect.stringMatching(/^[0-9a-f]{40}$/),
    });

    const anonymous = await request(tokenUrl!);
    expect(anonymous.statusCode).toBe(401);
    await anonymous.body.dump();

    // Nothing printed carries the token.
    expect(started.output()).not.toContain(body.access_token as string);

    started.child.kill('SIGINT');
    expect(await exitWithin(started, 5_000)).toBe(0);
  });

  it('with real configuration passes the environment through and prints no secret', async () => {
    const simulator: WeChatSimulator = await startWeChatSimulator({
      apps: [{ appid: TEST_APPID, secret: TEST_SECRET }],
    });
    cleanups.push(() => simulator.close());
    const started = start(
      bareEnv({
        PORT: '0',
        WECHAT_APPID: TEST_APPID,
        WECHAT_APPSECRET: TEST_SECRET,
        WECHAT_CLIENT_KEY: CLIENT_KEY,
        WECHAT_API_BASE_URL: simulator.baseUrl,
      }),
    );
    const [, port] = await waitFor(started, /listening\s+http:\/\/127\.0\.0\.1:(\d+)/);
    await waitFor(started, /Ctrl-C/);
    const banner = started.output();
    expect(banner).toContain(`using WeChat at ${simulator.baseUrl}`);
    expect(banner).toMatch(/in-process cache/);
    expect(banner).toContain('Bearer $WECHAT_CLIENT_KEY');
    expect(banner).not.toContain(TEST_SECRET);
    expect(banner).not.toContain(CLIENT_KEY);

    const res = await request(`http://127.0.0.1:${port}/token?appid=${TEST_APPID}`, {
      headers: { authorization: `Bearer ${CLIENT_KEY}` },
    });
    expect(res.statusCode).toBe(200);
    const body = (await res.body.json()) as { access_token: string };
    expect(simulator.tokenStatus(body.access_token)).toBe('valid');
    expect(simulator.calls.token + simulator.calls.stableToken).toBe(1);

    started.child.kill('SIGTERM');
    expect(await exitWithin(started, 5_000)).toBe(0);
  });

  it.each([
    ['SIGTERM', 'the server stops on the forwarded signal'],
    ['SIGKILL', 'the server stops once its parent is gone'],
  ] as const)(
    '%s to the npm start process releases the port and leaves no process behind (%s)',
    async (signal, _how) => {
      const started = start(bareEnv({ PORT: '0' }), true);
      const [, port] = await waitFor(started, /listening\s+http:\/\/127\.0\.0\.1:(\d+)/);
      await waitFor(started, /Ctrl-C/);
      const npmPid = started.child.pid!;
      const tree = descendants(npmPid);
      // Were the server to outlive npm, it must not outlive the test.
      cleanups.push(async () => {
        for (const pid of tree) if (alive(pid)) process.kill(pid, 'SIGKILL');
      });
      // npm runs the server below it: node itself (the script execs it), maybe with a shell in between.
      expect(tree.length).toBeGreaterThan(0);
      expect(await portInUse(Number(port))).toBe(true);

      process.kill(npmPid, signal);
      await started.exited;
      expect(await eventually(() => tree.every((pid) => !alive(pid)), 5_000)).toBe(true);
      expect(await eventually(async () => !(await portInUse(Number(port))), 2_000)).toBe(true);
      // On SIGTERM the server shut down gracefully (its own handler ran), not by the parent watch.
      if (signal === 'SIGTERM') expect(started.output()).toContain('SIGTERM: stopping');
    },
  );

  it('exits 1 with one clear line when the port is in use', async () => {
    const blocker: Server = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise<void>((resolve) => blocker.close(() => resolve())));
    const { port } = blocker.address() as { port: number };

    const started = start(bareEnv({ PORT: String(port) }));
    expect(await exitWithin(started, 20_000)).toBe(1);
    const lines = started.stderr().trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(`port ${port}`);
    expect(lines[0]).toContain('already in use');
  });

  it('exits 1 naming the variable when the configuration is invalid', async () => {
    const started = start(
      bareEnv({ PORT: '0', WECHAT_APPID: 'not-an-appid', WECHAT_APPSECRET: TEST_SECRET }),
    );
    expect(await exitWithin(started, 20_000)).toBe(1);
    expect(started.stderr()).toContain('WECHAT_APPID');
    expect(started.stderr()).not.toContain(TEST_SECRET);
  });
});
