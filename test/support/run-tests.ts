/**
 * `npm test` and the other test scripts: `vitest run` for the projects named with `--project`,
 * taking every other vitest option (reporters, filters) as given.
 *
 * The integration and soak projects need a memcached binary. Without one they are not run: the
 * other projects still run, and the run ends with one line saying what is missing and how to get
 * it, and exit code 1. (A vitest global setup that throws stops every project, with a stack trace.)
 *
 * Run through tsx (as package.json does), so that it runs on every supported Node: `tsx test/support/run-tests.ts --project unit`.
 */
import { parseCLI, startVitest } from 'vitest/node';
import { findMemcachedBinary } from '../../local/memcached-server.ts';
import { memcachedMissingLine } from './memcached-missing.ts';

const NEEDS_MEMCACHED = new Set(['integration', 'soak']);

const { filter, options } = parseCLI(['vitest', 'run', ...process.argv.slice(2)]);
const requested = [options.project ?? []].flat();
if (requested.length === 0) {
  process.stderr.write(
    'run-tests: name the projects to run with --project (unit, integration, soak, deploy)\n',
  );
  process.exit(2);
}

const needing = requested.filter((p) => NEEDS_MEMCACHED.has(p));
const notRun = needing.length > 0 && !findMemcachedBinary() ? needing : [];
const projects = requested.filter((p) => !notRun.includes(p));

if (projects.length > 0) {
  try {
    await startVitest('test', filter, { ...options, project: projects, run: true, watch: false });
  } catch (err) {
    process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exitCode = 1;
  }
}
if (notRun.length > 0) {
  process.stderr.write(`\n${memcachedMissingLine(notRun)}\n`);
  process.exitCode = 1;
}
// Exit now, as the vitest command does: a leftover handle in a test must not keep the run open.
process.exit();
