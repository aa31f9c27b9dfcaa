// Builds the consumer client, the package's "./client" export, next to the Lambda bundle:
//   dist/client.mjs, dist/client.cjs        lib/client/exports.ts as ESM and as CommonJS; the optional
//                                           peers (@aws-sdk/client-lambda, Powertools) stay external;
//   dist/types/client/*.d.mts, *.d.cts     its declarations, one file per module of lib/client/.
// The client is shipped to consumers on its own: the build fails if it pulls in anything outside
// lib/client/ (a service module, memjs, the Secrets Manager SDK, undici).
import { readdirSync, readFileSync } from 'node:fs';
import { build } from 'esbuild';
import ts from 'typescript';

const ENTRY = 'lib/client/exports.ts';
const SOURCE_DIR = 'lib/client';

const options = {
  entryPoints: [ENTRY],
  bundle: true,
  platform: 'node',
  target: 'node22',
  // Readable output: consumers read its stack traces, and bundle it again anyway.
  minify: false,
  sourcemap: false,
  legalComments: 'none',
  external: ['@aws-sdk/*', '@aws-lambda-powertools/*'],
  logLevel: 'warning',
  write: false,
  metafile: true,
};

/** Builds the client and its declarations; `write(path, contents)` writes each file. */
export async function buildClient(write) {
  const [esm, cjs] = await Promise.all([
    build({ ...options, format: 'esm', outfile: 'dist/client.mjs' }),
    build({
      ...options,
      format: 'cjs',
      outfile: 'dist/client.cjs',
      // The Powertools provider loads its peer through createRequire(import.meta.url).
      define: { 'import.meta.url': '__clientModuleUrl', 'import.meta.resolve': 'undefined' },
      banner: { js: 'const __clientModuleUrl = require("node:url").pathToFileURL(__filename).href;' },
    }),
  ]);
  for (const result of [esm, cjs]) {
    const foreign = Object.keys(result.metafile.inputs).filter(
      (input) => !input.startsWith(`${SOURCE_DIR}/`),
    );
    if (foreign.length > 0)
      throw new Error(`the client must bundle lib/client/ only, but bundles ${foreign[0]}`);
  }
  const files = [...esm.outputFiles, ...cjs.outputFiles].map((file) => ({
    path: file.path,
    contents: file.contents,
  }));
  for (const source of readdirSync(SOURCE_DIR).filter((name) => name.endsWith('.ts'))) {
    const path = `${SOURCE_DIR}/${source}`;
    const declaration = declarationOf(path);
    const base = `dist/types/client/${source.slice(0, -'.ts'.length)}`;
    files.push({ path: `${base}.d.mts`, contents: withExtension(declaration, '.mjs') });
    files.push({ path: `${base}.d.cts`, contents: withExtension(declaration, '.cjs') });
  }
  for (const file of files) write(file.path, file.contents);
  return files;
}

/** The declaration of one module, from its source alone (the client is written for isolatedDeclarations). */
function declarationOf(path) {
  const result = ts.transpileDeclaration(readFileSync(path, 'utf8'), {
    fileName: path,
    reportDiagnostics: true,
    compilerOptions: {
      target: ts.ScriptTarget.ES2023,
      module: ts.ModuleKind.NodeNext,
      strict: true,
      isolatedDeclarations: true,
      allowImportingTsExtensions: true,
    },
  });
  if (result.diagnostics?.length) {
    const [first] = result.diagnostics;
    const line = first.file ? first.file.getLineAndCharacterOfPosition(first.start ?? 0).line + 1 : 0;
    throw new Error(`${path}:${line}: ${ts.flattenDiagnosticMessageText(first.messageText, ' ')}`);
  }
  return result.outputText;
}

/** Relative `./x.ts` specifiers as the sibling declaration files are named (`./x.mjs` → x.d.mts). */
function withExtension(declaration, extension) {
  return declaration.replace(/(from\s+['"]\.\/[\w-]+)\.ts(['"])/g, `$1${extension}$2`);
}
