/** The benchmark's raw reference client (local/raw-memcached.cjs) against real memcached, plain and TLS. */
import { createRequire } from 'node:module';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type MemcachedProcess, startMemcached } from '../../../local/memcached-server.ts';
import { createTestCa, type TestCa } from '../../../local/test-ca.ts';

interface Raw {
  get(key: string): Promise<Buffer | null>;
  set(key: string, value: string, ttlSeconds: number): Promise<string>;
  close(): void;
}
const { connectRaw } = createRequire(import.meta.url)('../../../local/raw-memcached.cjs') as {
  connectRaw(options: {
    host: string;
    port: number;
    tls?: { ca?: string; servername?: string } | false;
  }): Promise<Raw>;
};

let ca: TestCa;
let plain: MemcachedProcess;
let secure: MemcachedProcess;
beforeAll(async () => {
  ca = createTestCa();
  [plain, secure] = await Promise.all([
    startMemcached(),
    startMemcached({
      protocol: 'ascii',
      tls: { ...ca.issue(['localhost']), caFile: ca.caFile, serverName: 'localhost' },
    }),
  ]);
});
afterAll(async () => {
  await Promise.all([plain.stop(), secure.stop()]);
  ca.remove();
});

describe.each([
  ['plain TCP', () => ({ host: plain.host, port: plain.port, tls: false as const })],
  ['TLS', () => ({ host: secure.host, port: secure.port, tls: { ca: ca.caPem, servername: 'localhost' } })],
])('connectRaw over %s', (_name, target) => {
  it('sets and gets a 300-byte value, pipelined, and answers null for an absent key', async () => {
    const raw = await connectRaw(target());
    const value = 'v'.repeat(300);
    expect(await raw.set('bench:raw', value, 60)).toBe('STORED');
    const got = await Promise.all(Array.from({ length: 20 }, () => raw.get('bench:raw')));
    for (const g of got) expect(g?.toString()).toBe(value);
    expect(await raw.get('bench:absent')).toBeNull();
    raw.close();
  });
});
