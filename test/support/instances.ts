/**
 * Separate OS processes running dist/index.js, as separate Lambda instances are. Every line they
 * print is recorded for the log check.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { resolve } from 'node:path';
import type { Readable } from 'node:stream';
import { recordChildOutput } from './capture-output.ts';

export interface Instance {
  pid: number;
  /** Invokes the handler in the child with a Lambda-like context of `remainingMs`. */
  invoke<T = unknown>(event: unknown, remainingMs?: number): Promise<T>;
  /** Blocks the instance's event loop for `ms` (a synchronous busy loop), at once. */
  stall(ms: number): void;
  /** Log lines (parsed JSON) the instance printed so far. */
  logs(): Array<Record<string, unknown>>;
  close(): Promise<void>;
}

const BUNDLE = resolve('dist/index.js');
const WORKER = resolve('test/support/instance-worker.cjs');

export async function spawnInstance(env: Record<string, string>): Promise<Instance> {
  const child: ChildProcess = spawn(process.execPath, [WORKER], {
    env: { PATH: process.env.PATH ?? '', WTS_BUNDLE: BUNDLE, ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  const logs: Array<Record<string, unknown>> = [];
  let nextId = 1;
  const parseLog = (line: string) => {
    if (!line.startsWith('{')) return;
    try {
      logs.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      // not a log line
    }
  };
  let exited: Error | undefined;
  onLines(child.stdout, (line) => {
    // Protocol lines carry response bodies (tokens by design); everything else is the instance's output.
    if (!line.startsWith('@@wts ')) {
      recordChildOutput(`${line}\n`);
      parseLog(line);
      return;
    }
    const message = JSON.parse(line.slice(6)) as { id?: number; result?: unknown; fatal?: string };
    if (message.fatal) {
      for (const p of pending.values()) p.reject(new Error(message.fatal));
      pending.clear();
    } else if (message.id !== undefined) {
      pending.get(message.id)?.resolve(message.result);
      pending.delete(message.id);
    }
  });
  onLines(child.stderr, (line) => {
    recordChildOutput(`${line}\n`);
    parseLog(line);
  });
  const streamsClosed = new Promise<void>((done) => child.on('close', () => done()));
  const exitPromise = new Promise<void>((done) =>
    child.on('exit', (code, signal) => {
      exited = new Error(`instance ${child.pid} exited (${code ?? signal})`);
      for (const p of pending.values()) p.reject(exited);
      pending.clear();
      done();
    }),
  );
  return {
    pid: child.pid ?? -1,
    invoke<T>(event: unknown, remainingMs = 10_000): Promise<T> {
      if (exited) return Promise.reject(exited);
      const id = nextId++;
      return new Promise<T>((resolveInvoke, reject) => {
        pending.set(id, { resolve: resolveInvoke as (v: unknown) => void, reject });
        child.stdin?.write(`${JSON.stringify({ id, event, remainingMs })}\n`);
      });
    },
    stall(ms: number): void {
      if (!exited) child.stdin?.write(`${JSON.stringify({ stallMs: ms })}\n`);
    },
    logs: () => logs,
    async close() {
      if (!exited) {
        child.stdin?.end();
        const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
        await exitPromise;
        clearTimeout(timer);
      }
      // 'close' comes after the child's stdout and stderr have ended: every line is read by then.
      await streamsClosed;
    },
  };
}

/** Calls `onLine` with each complete line the stream emits. */
function onLines(stream: Readable | null, onLine: (line: string) => void): void {
  let buffer = '';
  stream?.setEncoding('utf8').on('data', (chunk: string) => {
    buffer += chunk;
    let nl = buffer.indexOf('\n');
    while (nl !== -1) {
      onLine(buffer.slice(0, nl));
      buffer = buffer.slice(nl + 1);
      nl = buffer.indexOf('\n');
    }
  });
}

/**
 * The instances one test file spawns: `spawn` starts them, `closeAll` (in afterEach) stops them all,
 * so no process outlives its test.
 */
export function instancePool() {
  let live: Instance[] = [];
  return {
    async spawn(n: number, env: Record<string, string>): Promise<Instance[]> {
      const spawned = await Promise.all(Array.from({ length: n }, () => spawnInstance(env)));
      live.push(...spawned);
      return spawned;
    },
    async closeAll(): Promise<void> {
      const closing = live;
      live = [];
      await Promise.all(closing.map((i) => i.close()));
    },
  };
}
