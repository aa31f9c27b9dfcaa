// Bundles the Lambda to dist/ (CommonJS, Node 22), as two files:
//   dist/index.js        the handler; the AWS SDK stays external (the nodejs22.x runtime provides it,
//                        and the handler loads it only when it must read the secret);
//   dist/wechat-http.js  the WeChat client's HTTP transport with undici in it, which index.js
//                        requires on its first upstream call only: a cache hit never loads it.
// and the consumer client (package export "./client"), see client-build.mjs.
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, relative } from 'node:path';
import { build } from 'esbuild';
import { buildClient } from './client-build.mjs';
import { esbuildOptions, LAZY_TRANSPORT_FILE, lazyTransportPlugin } from './esbuild-options.mjs';

const options = { ...esbuildOptions, write: false, metafile: true };
const [main, lazy] = await Promise.all([
  build({
    ...options,
    entryPoints: ['handler/index.ts'],
    outfile: 'dist/index.js',
    plugins: [lazyTransportPlugin],
  }),
  build({
    ...options,
    entryPoints: ['lib/wechat/undici-transport.ts'],
    outfile: `dist/${LAZY_TRANSPORT_FILE}`,
  }),
]);
// The point of the split: fail the build rather than ship undici on the cache-hit path.
const eager = Object.keys(main.metafile.inputs).filter((input) => /node_modules\/undici\//.test(input));
if (eager.length > 0) throw new Error(`dist/index.js must not contain undici, but bundles ${eager[0]}`);

mkdirSync('dist', { recursive: true });
// Each file is replaced in one rename: a process loading dist/ during a rebuild (a test run packages
// while others spawn instances) sees the old file or the new one, never half of one.
const write = (path, contents) => {
  writeFileSync(`${path}.${process.pid}.tmp`, contents);
  renameSync(`${path}.${process.pid}.tmp`, path);
};
for (const file of [...main.outputFiles, ...lazy.outputFiles]) {
  write(file.path, file.contents);
  console.log(`${relative('.', file.path)} ${(file.contents.byteLength / 1024).toFixed(1)} KiB`);
}
// dist/ is self-describing for tools that resolve it as a package (the repository is ESM).
write('dist/package.json', `${JSON.stringify({ type: 'commonjs', main: 'index.js' }, null, 2)}\n`);
const client = await buildClient((path, contents) => {
  mkdirSync(dirname(path), { recursive: true });
  write(path, contents);
});
for (const file of client.filter((f) => !f.path.includes('/types/'))) {
  console.log(`${relative('.', file.path)} ${(file.contents.byteLength / 1024).toFixed(1)} KiB`);
}
console.log(
  `dist/types/client/ ${client.filter((f) => f.path.includes('/types/')).length} declaration files`,
);
