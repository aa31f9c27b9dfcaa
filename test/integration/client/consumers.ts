/**
 * Starts consumer processes (consumer-worker.ts) and collects their results. Their output goes to
 * the log check like every other process's.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { recordChildOutput } from '../../support/capture-output.ts';
import type { ConsumerConfig, ConsumerResult } from './consumer-worker.ts';

const WORKER = resolve('test/integration/client/consumer-worker.ts');

export interface Consumer {
  /** Resolves after the consumer's first successful business call. */
  ready: Promise<void>;
  result: Promise<ConsumerResult>;
  kill(): void;
}

export function spawnConsumer(config: ConsumerConfig, env: Record<string, string>): Consumer {
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', WORKER], {
    env: { PATH: process.env.PATH ?? '', ...env, WTS_CONSUMER: JSON.stringify(config) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let markReady: () => void = () => {};
  const ready = new Promise<void>((done) => {
    markReady = done;
  });
  let result: ConsumerResult | undefined;
  let stderr = '';
  let buffer = '';
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    buffer += chunk;
    for (let nl = buffer.indexOf('\n'); nl !== -1; nl = buffer.indexOf('\n')) {
      const line = buffer.slice(0, nl);
      buffer = buffer.slice(nl + 1);
      if (line === '@@ready') markReady();
      else if (line.startsWith('@@result '))
        result = JSON.parse(line.slice('@@result '.length)) as ConsumerResult;
      recordChildOutput(`${line}\n`);
    }
  });
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk;
    recordChildOutput(chunk);
  });
  const done = new Promise<ConsumerResult>((resolveResult, reject) => {
    child.on('close', (code) => {
      if (result) resolveResult(result);
      else reject(new Error(`consumer ${config.id} exited ${code} without a result: ${stderr.slice(-2000)}`));
    });
  });
  return {
    ready: Promise.race([ready, done.then(() => {})]),
    result: done,
    kill: () => {
      if (child.exitCode === null) child.kill('SIGKILL');
    },
  };
}

/** The service calls of one consumer, by action. */
export function callsByAction(result: ConsumerResult): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const call of result.serviceCalls) counts[call.action] = (counts[call.action] ?? 0) + 1;
  return counts;
}
