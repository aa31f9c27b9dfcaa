/**
 * Every line a test file (and the handler code it runs) prints — on stdout, stderr or the console —
 * is copied to a per-file log that the log check (log-check.ts) scans for secrets and tokens. The
 * service's JSON lines are not echoed to the terminal.
 */
import { appendFileSync } from 'node:fs';
import { join } from 'node:path';
import { format } from 'node:util';
import { inject } from 'vitest';

const dir = inject('outputDir');
const file = join(dir, `${process.pid}-${Math.random().toString(36).slice(2)}.log`);
// Created at once, so the log check counts every test file it covered, silent ones included.
appendFileSync(file, '');

for (const stream of [process.stdout, process.stderr]) {
  const original = stream.write.bind(stream) as (...args: unknown[]) => boolean;
  stream.write = ((chunk: unknown, ...rest: unknown[]) => {
    const text = typeof chunk === 'string' ? chunk : Buffer.from(chunk as Uint8Array).toString('utf8');
    appendFileSync(file, text);
    // The service's own JSON log and metric lines are kept for the check but not echoed.
    if (text.startsWith('{"')) return true;
    return original(chunk, ...rest);
  }) as typeof stream.write;
}

// vitest sends console output from the test worker to the main process itself, not through the
// streams above: copy it here too.
for (const method of ['log', 'info', 'warn', 'error', 'debug', 'trace'] as const) {
  const original = console[method].bind(console);
  console[method] = (...args: unknown[]) => {
    appendFileSync(file, `${format(...args)}\n`);
    original(...args);
  };
}

/** Output of child processes (other "instances") goes through here too. */
export function recordChildOutput(text: string): void {
  appendFileSync(file, text);
}
