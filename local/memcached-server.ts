/**
 * Starts a real `memcached` process on loopback for tests and benchmarks, with controls to
 * crash, freeze, restart and flush it. Only node built-ins are used (raw text protocol for
 * readiness checks and `flush_all`).
 *
 * @module
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { accessSync, constants, readdirSync, readFileSync } from 'node:fs';
import { type AddressInfo, connect, createServer } from 'node:net';
import { delimiter, join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';

/** How to start memcached (see {@link startMemcached}). */
export interface MemcachedOptions {
  /** Memory limit in MB (default 64). */
  memoryMb?: number;
  /** Loopback address to listen on (default `127.0.0.1`; any 127.0.0.0/8 address works on Linux). */
  host?: string;
  /**
   * `-B`: `ascii` (text only, as ElastiCache Serverless) or `auto` (both protocols, the default). Not
   * `binary`: the readiness probe speaks the text protocol.
   */
  protocol?: 'ascii' | 'auto';
  /**
   * Serve TLS only (`-Z`), with this certificate chain and key (PEM files). The readiness probe and
   * `flush` verify the server against `caFile`, by `serverName` (default: the listen address).
   */
  tls?: { certFile: string; keyFile: string; caFile: string; serverName?: string };
}

/** A running memcached child process. */
export interface MemcachedProcess {
  /** The loopback address it listens on (`127.0.0.1` unless told otherwise). */
  host: string;
  /** TCP port; stays the same across {@link MemcachedProcess.restart}. */
  port: number;
  /** `HOST:PORT`, the form memjs and the service configuration take. */
  address: string;
  /** PID of the current memcached process (changes after {@link MemcachedProcess.restart}). */
  pid: number;
  /** Graceful stop: SIGTERM, then SIGKILL if it has not exited after 2 s; resolves once it exited. */
  stop(): Promise<void>;
  /** Crash: SIGKILL; resolves once it exited. */
  kill(): Promise<void>;
  /**
   * Freezes the process (SIGSTOP): connections stay open but nothing is answered. Returns once
   * every memcached thread is stopped (SIGSTOP itself is asynchronous).
   */
  pause(): void;
  /** Unfreezes the process (SIGCONT). */
  resume(): void;
  /** Stops it if still running, then starts a new, empty memcached on the same port and waits until ready. */
  restart(): Promise<void>;
  /** Empties the cache with `flush_all` over a raw text-protocol connection. */
  flush(): Promise<void>;
}

/** Message of the error thrown when no memcached binary can be found. */
export const MEMCACHED_NOT_FOUND_MESSAGE =
  'memcached not found on PATH: install it (Debian/Ubuntu: apt-get install -y memcached; macOS: brew install memcached) and run the tests again';

const DEFAULT_HOST = '127.0.0.1';
const READY_TIMEOUT_MS = 5_000;
const STOP_GRACE_MS = 2_000;
const PORT_ATTEMPTS = 5;
const FALLBACK_BINARIES = ['/usr/bin/memcached', '/usr/local/bin/memcached', '/opt/homebrew/bin/memcached'];

/** Live memcached children and their watchdogs, killed when the parent process exits. */
const liveChildren = new Map<ChildProcess, ChildProcess | undefined>();
let exitHookInstalled = false;

function killQuietly(child: ChildProcess | undefined): void {
  try {
    child?.kill('SIGKILL');
  } catch {
    // already gone
  }
}

/**
 * Makes sure `child` never outlives this process. A process 'exit' hook covers normal exits and
 * `process.exit()`, but not death by signal: vitest stops its fork workers with SIGTERM (SIGKILL
 * after 500 ms), and no 'exit' event fires then. So a watchdog (`sh` running `cat`) also holds the
 * read end of a pipe from this process; when this process dies, however it dies, the pipe closes,
 * `cat` sees EOF and the watchdog SIGKILLs memcached.
 */
function guard(child: ChildProcess): void {
  let watchdog: ChildProcess | undefined;
  if (child.pid !== undefined) {
    watchdog = spawn(
      '/bin/sh',
      ['-c', 'cat >/dev/null; kill -KILL "$1" 2>/dev/null', 'memcached-watchdog', String(child.pid)],
      { stdio: ['pipe', 'ignore', 'ignore'] },
    );
    watchdog.on('error', () => {}); // no /bin/sh: the exit hook still applies
    watchdog.unref();
    (watchdog.stdin as { unref?: () => void } | null)?.unref?.();
  }
  liveChildren.set(child, watchdog);
  child.once('error', () => {
    liveChildren.delete(child);
    killQuietly(watchdog);
  });
  child.once('exit', () => {
    liveChildren.delete(child);
    // Kill the watchdog instead of letting it run: the memcached PID may be reused.
    killQuietly(watchdog);
  });
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const [memcached, dog] of liveChildren) {
      killQuietly(memcached);
      killQuietly(dog);
    }
  });
}

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * The memcached binary {@link startMemcached} would run: the first on PATH, else one of
 * `/usr/bin`, `/usr/local/bin`, `/opt/homebrew/bin`; `undefined` when there is none.
 */
export function findMemcachedBinary(): string | undefined {
  const fromPath = (process.env.PATH ?? '')
    .split(delimiter)
    .filter((dir) => dir !== '')
    .map((dir) => join(dir, 'memcached'));
  return [...fromPath, ...FALLBACK_BINARIES].find(isExecutable);
}

function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.unref();
    probe.once('error', reject);
    probe.listen(0, host, () => {
      const { port } = probe.address() as AddressInfo;
      probe.close(() => resolve(port));
    });
  });
}

/** Whether every thread of `pid` is stopped (SIGSTOP took effect); `undefined` if it cannot tell. */
function isFrozen(pid: number): boolean | undefined {
  try {
    return readdirSync(`/proc/${pid}/task`).every((task) => {
      const stat = readFileSync(`/proc/${pid}/task/${task}/stat`, 'utf8');
      const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
      return state === 'T' || state === 't';
    });
  } catch {
    // no /proc (macOS): ask ps
  }
  try {
    return execFileSync('ps', ['-o', 'stat=', '-p', String(pid)], { encoding: 'utf8' })
      .trim()
      .startsWith('T');
  } catch {
    return undefined;
  }
}

/**
 * SIGSTOP is asynchronous: `kill()` returns before the threads stop, and a request sent at once
 * can still be served (about 1 in 6 times on a 2-core VM). Block until every thread is stopped.
 */
function waitUntilFrozen(pid: number, timeoutMs: number): void {
  const tick = new Int32Array(new SharedArrayBuffer(4));
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const frozen = isFrozen(pid);
    if (frozen === undefined) {
      Atomics.wait(tick, 0, 0, 50); // cannot observe it: give the signal a moment instead
      return;
    }
    if (frozen) return;
    if (Date.now() >= deadline) throw new Error(`memcached (pid ${pid}) did not stop within ${timeoutMs} ms`);
    Atomics.wait(tick, 0, 0, 1);
  }
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Where a probe connects, and how. */
interface Target {
  host: string;
  port: number;
  tls: MemcachedOptions['tls'];
}

/**
 * Sends one text-protocol command and resolves with the first response line.
 * Rejects on connection errors or after `timeoutMs`.
 */
function textCommand(target: Target, command: string, timeoutMs: number): Promise<string> {
  const { host, port } = target;
  return new Promise((resolve, reject) => {
    let received = '';
    const socket = target.tls
      ? tlsConnect({
          host,
          port,
          ca: readFileSync(target.tls.caFile, 'utf8'),
          ...(target.tls.serverName ? { servername: target.tls.serverName } : {}),
        })
      : connect({ host, port });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`memcached on ${host}:${port} did not answer "${command}" within ${timeoutMs} ms`));
    }, timeoutMs);
    const finish = (error: Error | undefined, line?: string) => {
      clearTimeout(timer);
      socket.destroy();
      if (error) reject(error);
      else resolve(line ?? '');
    };
    socket.setEncoding('utf8');
    // Node buffers the write until the connection (and the TLS handshake) is up.
    socket.write(`${command}\r\n`);
    socket.on('data', (chunk: string) => {
      received += chunk;
      const end = received.indexOf('\r\n');
      if (end >= 0) finish(undefined, received.slice(0, end));
    });
    socket.on('error', (error) => finish(error));
    socket.on('close', () => finish(new Error(`memcached on ${host}:${port} closed the connection`)));
  });
}

type LaunchResult = { ok: true; child: ChildProcess } | { ok: false; portInUse: boolean; reason: string };

/** Spawns memcached on `port` and waits until it answers `version`, or until it exits. */
async function launch(binary: string, target: Target, options: MemcachedOptions): Promise<LaunchResult> {
  const { host, port } = target;
  const args = ['-l', host, '-p', String(port), '-U', '0', '-m', String(options.memoryMb ?? 64)];
  if (options.protocol) args.push('-B', options.protocol);
  if (options.tls)
    args.push('-Z', '-o', `ssl_chain_cert=${options.tls.certFile},ssl_key=${options.tls.keyFile}`);
  // memcached refuses to run as root unless told which user to run as.
  if (process.getuid?.() === 0) args.push('-u', 'root');

  const child = spawn(binary, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (chunk: string) => {
    if (stderr.length < 4_096) stderr += chunk;
  });
  const stderrClosed = new Promise<void>((resolve) => {
    if (child.stderr) child.stderr.once('close', resolve);
    else resolve();
  });
  let exited: string | undefined;
  let spawnError: Error | undefined;
  let onGone: () => void = () => {};
  const gone = new Promise<void>((resolve) => {
    onGone = resolve;
  });
  child.once('error', (error) => {
    spawnError = error;
    onGone();
  });
  child.once('exit', (code, signal) => {
    exited = signal ? `signal ${signal}` : `code ${code}`;
    onGone();
  });
  guard(child);

  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (spawnError || exited !== undefined) break;
    try {
      // Stop probing as soon as the child dies (e.g. another listener answers the probe's connect).
      const line = await Promise.race([textCommand(target, 'version', 500), gone.then(() => '')]);
      if (line.startsWith('VERSION ')) {
        // Neither the child nor its stderr pipe may keep the parent process alive.
        child.unref();
        (child.stderr as { unref?: () => void } | null)?.unref?.();
        return { ok: true, child };
      }
    } catch {
      // not listening yet
    }
    await sleep(20);
  }

  if (spawnError) {
    return { ok: false, portInUse: false, reason: `cannot run ${binary}: ${spawnError.message}` };
  }
  if (exited === undefined) {
    await terminate(child, 'SIGKILL', 0);
    return {
      ok: false,
      portInUse: false,
      reason: `memcached on ${host}:${port} not ready within ${READY_TIMEOUT_MS} ms ${stderr.trim()}`.trim(),
    };
  }
  // Let the last stderr chunk arrive before judging why it exited.
  await Promise.race([stderrClosed, sleep(200)]);
  const portInUse = /address already in use|failed to listen/i.test(stderr);
  return { ok: false, portInUse, reason: `memcached exited (${exited}): ${stderr.trim() || 'no output'}` };
}

/** Sends `signal` (then SIGKILL after `graceMs`, if > 0) and resolves once the child exited. */
function terminate(child: ChildProcess, signal: NodeJS.Signals, graceMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise<void>((resolve) => {
    let killTimer: NodeJS.Timeout | undefined;
    child.once('exit', () => {
      if (killTimer) clearTimeout(killTimer);
      resolve();
    });
    // Keep the event loop alive until the exit is observed.
    child.ref();
    child.kill(signal);
    // A stopped (SIGSTOP) process only acts on SIGTERM once it runs again.
    if (signal !== 'SIGKILL') child.kill('SIGCONT');
    if (signal !== 'SIGKILL' && graceMs > 0) {
      killTimer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    }
  });
}

/**
 * Starts memcached (the binary from PATH, else `/usr/bin`, `/usr/local/bin` or `/opt/homebrew/bin`) listening only on
 * a loopback address (`127.0.0.1` unless told otherwise) on a free random port, TCP only (`-U 0`),
 * with `-m 64` MB unless told otherwise, optionally text-only (`-B ascii`) or TLS-only (`-Z`),
 * and waits (up to 5 s) until it answers. The process is killed when the calling process exits,
 * even by a signal. When the port turns out to be taken, it retries on another one.
 *
 * Note that memcached acts on SIGTERM only at its next once-a-second clock tick, so
 * {@link MemcachedProcess.stop} (and `restart()` of a running server) takes up to about 1 s;
 * {@link MemcachedProcess.kill} is immediate.
 *
 * @param options - memory, loopback address, protocol and TLS (see {@link MemcachedOptions})
 * @throws Error with {@link MEMCACHED_NOT_FOUND_MESSAGE} when no memcached binary is installed
 */
export async function startMemcached(options: MemcachedOptions = {}): Promise<MemcachedProcess> {
  const binary = findMemcachedBinary();
  if (!binary) throw new Error(MEMCACHED_NOT_FOUND_MESSAGE);
  const host = options.host ?? DEFAULT_HOST;
  const at = (port: number): Target => ({ host, port, tls: options.tls });

  const startOn = async (port: number): Promise<LaunchResult> => {
    let result = await launch(binary, at(port), options);
    // The old listener of this port may linger briefly right after a crash.
    for (let attempt = 1; !result.ok && result.portInUse && attempt < PORT_ATTEMPTS; attempt++) {
      await sleep(100 * attempt);
      result = await launch(binary, at(port), options);
    }
    return result;
  };

  let child: ChildProcess | undefined;
  let port = 0;
  let lastReason = '';
  for (let attempt = 0; attempt < PORT_ATTEMPTS && !child; attempt++) {
    port = await freePort(host);
    const result = await launch(binary, at(port), options);
    if (result.ok) child = result.child;
    else if (!result.portInUse) throw new Error(result.reason);
    else lastReason = result.reason;
  }
  if (!child) throw new Error(`could not start memcached after ${PORT_ATTEMPTS} ports: ${lastReason}`);

  let current: ChildProcess = child;
  const running = () => current.exitCode === null && current.signalCode === null;
  const signal = (name: NodeJS.Signals) => {
    if (!running()) throw new Error(`memcached (pid ${current.pid}) is not running`);
    current.kill(name);
  };

  return {
    host,
    port,
    address: `${host}:${port}`,
    get pid() {
      return current.pid ?? -1;
    },
    stop: () => terminate(current, 'SIGTERM', STOP_GRACE_MS),
    kill: () => terminate(current, 'SIGKILL', 0),
    pause: () => {
      signal('SIGSTOP');
      if (current.pid !== undefined) waitUntilFrozen(current.pid, 1_000);
    },
    resume: () => signal('SIGCONT'),
    restart: async () => {
      await terminate(current, 'SIGTERM', STOP_GRACE_MS);
      const result = await startOn(port);
      if (!result.ok) throw new Error(`could not restart memcached on ${host}:${port}: ${result.reason}`);
      current = result.child;
    },
    flush: async () => {
      const line = await textCommand(at(port), 'flush_all', 2_000);
      if (line !== 'OK') throw new Error(`flush_all on ${host}:${port} answered ${JSON.stringify(line)}`);
    },
  };
}
