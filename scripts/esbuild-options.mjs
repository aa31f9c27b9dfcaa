/** The esbuild options both bundles share (scripts/build.mjs). */
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

/** The file next to dist/index.js that holds the WeChat HTTP transport (undici inside). */
export const LAZY_TRANSPORT_FILE = 'wechat-http.js';

/**
 * For the handler bundle: the WeChat client's `import('./undici-transport.ts')` becomes
 * `import('./wechat-http.js')`, resolved at run time next to index.js, so undici stays out of
 * index.js and loads on the first upstream call only. A static import would defeat that: it fails.
 */
export const lazyTransportPlugin = {
  name: 'lazy-wechat-transport',
  setup(build) {
    build.onResolve({ filter: /\/undici-transport\.ts$/ }, (args) => {
      if (args.kind !== 'dynamic-import') {
        throw new Error(
          `${args.importer} imports ${args.path} statically: only a dynamic import keeps it lazy`,
        );
      }
      return { path: `./${LAZY_TRANSPORT_FILE}`, external: true };
    });
  },
};
