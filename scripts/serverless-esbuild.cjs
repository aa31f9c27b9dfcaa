// serverless-esbuild options (serverless.yml `custom.esbuild.config`): the same esbuild options as
// `npm run build`, so the deployed zip holds the same bundle as dist/index.js. The plugin loads this
// file with require() and calls it synchronously, hence CommonJS (Node 22 can require the .mjs).
const { esbuildOptions } = require('./esbuild-options.mjs');

module.exports = () => ({
  ...esbuildOptions,
  // `exclude` = external AND not installed into the zip: the nodejs22.x runtime provides @aws-sdk/*,
  // so the package carries no node_modules at all.
  exclude: esbuildOptions.external,
});
