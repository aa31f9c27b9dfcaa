/**
 * Global setup of every test project: a directory for the per-file output logs that
 * capture-output.ts writes, and after the run a scan of every line in them for secrets and tokens.
 * A leak fails the run (exit code 1).
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { findLeaks } from './secrets.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    outputDir: string;
  }
}

let outputDir: string | undefined;
let projectName = '';

export function setup(project: TestProject): void {
  projectName = project.name;
  outputDir = mkdtempSync(join(tmpdir(), `wts-test-output-${projectName}-`));
  project.provide('outputDir', outputDir);
}

export function teardown(): void {
  if (!outputDir) return;
  const files = readdirSync(outputDir);
  let lines = 0;
  const leaks: string[] = [];
  for (const file of files) {
    const text = readFileSync(join(outputDir, file), 'utf8');
    lines += text.split('\n').filter((line) => line !== '').length;
    leaks.push(...findLeaks(text).map((leak) => `${file}: ${leak}`));
  }
  rmSync(outputDir, { recursive: true, force: true });
  if (leaks.length > 0) {
    // vitest only logs an error thrown here ("error during close") and still exits 0: fail the run
    // through the exit code.
    process.exitCode = 1;
    process.stderr.write(
      `log check (${projectName}) FAILED: secrets or tokens were printed:\n${leaks.slice(0, 20).join('\n')}\n`,
    );
    return;
  }
  process.stdout.write(
    `log check (${projectName}): ${lines} output lines from ${files.length} test files scanned, no secret or token found\n`,
  );
}
