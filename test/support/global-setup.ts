/**
 * Once per test run: build dist/ (integration tests run the deployable bundle), start a real
 * memcached on a random loopback port, and afterwards check every line the run printed for secrets
 * and tokens (see capture-output.ts).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { type MemcachedProcess, startMemcached } from '../../local/memcached-server.ts';
import { findLeaks } from './secrets.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    memcachedAddress: string;
    outputDir: string;
  }
}

let memcached: MemcachedProcess | undefined;
let outputDir: string | undefined;

export async function setup(project: TestProject): Promise<void> {
  execFileSync(process.execPath, ['scripts/build.mjs'], { stdio: 'pipe' });
  memcached = await startMemcached();
  outputDir = mkdtempSync(join(tmpdir(), 'wts-test-output-'));
  project.provide('memcachedAddress', memcached.address);
  project.provide('outputDir', outputDir);
}

export async function teardown(): Promise<void> {
  await memcached?.stop();
  if (!outputDir) return;
  const files = readdirSync(outputDir);
  let lines = 0;
  const leaks: string[] = [];
  for (const file of files) {
    const text = readFileSync(join(outputDir, file), 'utf8');
    lines += text.split('\n').length;
    leaks.push(...findLeaks(text).map((leak) => `${file}: ${leak}`));
  }
  rmSync(outputDir, { recursive: true, force: true });
  if (leaks.length > 0) {
    throw new Error(`secrets or tokens were printed during the test run:\n${leaks.slice(0, 20).join('\n')}`);
  }
  process.stdout.write(
    `log check: ${lines} output lines from ${files.length} test files scanned, no secret or token found\n`,
  );
}
