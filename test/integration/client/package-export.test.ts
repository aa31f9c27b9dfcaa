/**
 * The package's "./client" export as a consumer meets it, on the files `npm run build` wrote:
 * dist/client.mjs for `import`, dist/client.cjs for `require`, each with its declarations, and
 * nothing of the service in them.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import ts from 'typescript';
import { afterAll, describe, expect, it } from 'vitest';

const PACKAGE = 'wechat-token-service/client';
const EXPORTS = [
  'CLIENT_ERROR_CODES',
  'TOKEN_INVALID_ERRCODES',
  'TokenClient',
  'TokenClientError',
  'TokenProvider',
  'coWechatApi',
  'easyWechat',
  'httpTransport',
  'invokeTransport',
  'isInvalidTokenErrcode',
  'wechatApi',
  'wechatErrcode',
];

const fixtures: string[] = [];
afterAll(() => {
  for (const dir of fixtures) rmSync(dir, { recursive: true, force: true });
});

describe('the ./client export', () => {
  it('import gives dist/client.mjs, require gives dist/client.cjs, with the same names', async () => {
    const esm = (await import(/* @vite-ignore */ PACKAGE)) as Record<string, unknown>;
    const cjs = createRequire(import.meta.url)(PACKAGE) as Record<string, unknown>;
    expect(Object.keys(esm).sort()).toEqual(EXPORTS);
    expect(Object.keys(cjs).sort()).toEqual(EXPORTS);
    expect(import.meta.resolve(PACKAGE)).toMatch(/\/dist\/client\.mjs$/);
    expect(createRequire(import.meta.url).resolve(PACKAGE)).toMatch(/\/dist\/client\.cjs$/);
  });

  it('neither bundle holds the service, memjs, undici or the Secrets Manager client', () => {
    for (const file of ['dist/client.mjs', 'dist/client.cjs']) {
      const text = readFileSync(file, 'utf8');
      for (const foreign of ['memjs', 'undici', 'client-secrets-manager', 'MemcachedStore', 'TokenService']) {
        expect(text, `${file} mentions ${foreign}`).not.toContain(foreign);
      }
    }
  });

  it.each([
    ['an ES module', 'module'],
    ['a CommonJS module', 'commonjs'],
  ])(
    'type-checks in %s consumer, and its types catch a misuse',
    (_what, type) => {
      const dir = mkdtempSync(join(tmpdir(), 'wts-client-consumer-'));
      fixtures.push(dir);
      mkdirSync(join(dir, 'node_modules'));
      symlinkSync(resolve('.'), join(dir, 'node_modules', 'wechat-token-service'));
      symlinkSync(resolve('node_modules/@types'), join(dir, 'node_modules', '@types'));
      writeFileSync(join(dir, 'package.json'), JSON.stringify({ type }));
      writeFileSync(
        join(dir, 'good.ts'),
        [
          "import { TokenClient, httpTransport, TokenClientError, type TokenClientErrorCode } from 'wechat-token-service/client';",
          "const client = new TokenClient({ appid: 'wx0123456789abcdef', transport: httpTransport({ baseUrl: 'https://t.example.com', key: 'k' }) });",
          'export const token: Promise<string> = client.getToken({ deadlineMs: 5000 });',
          "export const code: TokenClientErrorCode = 'wechat_unavailable';",
          'export const isError = (e: unknown) => e instanceof TokenClientError && e.retryable;',
        ].join('\n'),
      );
      writeFileSync(
        join(dir, 'bad.ts'),
        [
          "import { TokenClient } from 'wechat-token-service/client';",
          'declare const client: TokenClient;',
          'export const n: number = await client.getToken();',
        ].join('\n'),
      );
      // One program for both files: each costs seconds to check against @types/node.
      const program = ts.createProgram([join(dir, 'good.ts'), join(dir, 'bad.ts')], {
        strict: true,
        module: ts.ModuleKind.NodeNext,
        moduleResolution: ts.ModuleResolutionKind.NodeNext,
        target: ts.ScriptTarget.ES2022,
        types: ['node'],
        noEmit: true,
      });
      const diagnostics = (file: string) =>
        ts
          .getPreEmitDiagnostics(program, program.getSourceFile(join(dir, file)))
          .map((d) => ts.flattenDiagnosticMessageText(d.messageText, ' '));
      expect(diagnostics('good.ts')).toEqual([]);
      const bad = diagnostics('bad.ts');
      expect(
        bad.some((message) => message.includes("Type 'string' is not assignable to type 'number'")),
      ).toBe(true);
    },
    30_000,
  );
});
