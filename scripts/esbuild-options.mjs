/** One set of esbuild options for `npm run build` and the serverless package. */
export const esbuildOptions = {
  bundle: true,
  platform: 'node',
  target: 'node22',
  format: 'cjs',
  minify: true,
  sourcemap: false,
  legalComments: 'none',
  external: ['@aws-sdk/*'],
  logLevel: 'warning',
};
