// Bundles the Lambda handler to dist/index.js (CommonJS, Node 22). The AWS SDK stays external: the
// nodejs22.x runtime provides it, and the handler loads it only when it must read the secret.
import { mkdirSync, writeFileSync } from 'node:fs';
import { build } from 'esbuild';
import { esbuildOptions } from './esbuild-options.mjs';

mkdirSync('dist', { recursive: true });
const result = await build({
  ...esbuildOptions,
  entryPoints: ['handler/index.ts'],
  outfile: 'dist/index.js',
  metafile: true,
});
// dist/ is self-describing for tools that resolve it as a package.
writeFileSync('dist/package.json', `${JSON.stringify({ type: 'commonjs', main: 'index.js' }, null, 2)}\n`);
const bytes = Object.values(result.metafile.outputs).reduce((sum, out) => sum + out.bytes, 0);
console.log(`dist/index.js ${(bytes / 1024).toFixed(1)} KiB`);
