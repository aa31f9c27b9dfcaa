/**
 * TLS misconfigurations against real servers: each fails the call with cache_unavailable, a message
 * naming the cause and the variable to change, within the call's timeout — for the text-protocol
 * adapter, memjs (binary) with its TLS socket factory, and Auto Discovery.
 */
import { type AddressInfo, createServer, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { KeyValueStore } from '../../../lib/ports.ts';
import type { NodeAddress, TlsSettings } from '../../../lib/store/connection.ts';
import { ConfigEndpoint } from '../../../lib/store/discovery.ts';
import { MemcachedStore } from '../../../lib/store/memcached.ts';
import { TextMemcachedStore } from '../../../lib/store/memcached-text.ts';
import { nodeSocketFactory } from '../../../lib/store/memjs-socket.ts';
import { type MemcachedProcess, startMemcached } from '../../../local/memcached-server.ts';
import { createTestCa } from '../../../local/test-ca.ts';
import { failure } from '../../support/failure.ts';

const TIMEOUT_MS = 300;
/** What the text adapter adds for a call that must open its connection (1000 ms by default). */
const CONNECT_ALLOWANCE_MS = 200;
/**
 * The bound of a failing call, plus scheduling slack on a busy 2-core machine: the text adapter's
 * timeout and connect allowance; memjs's call guard retries once on a fresh connection with four
 * times the timeout, at least 1 s (lib/store/call-guard.ts).
 */
const WORST_CASE_MS =
  Math.max(TIMEOUT_MS + CONNECT_ALLOWANCE_MS, TIMEOUT_MS + Math.max(1000, 4 * TIMEOUT_MS)) + 400;

const ca = createTestCa();
const servers: MemcachedProcess[] = [];
let tlsGood: MemcachedProcess;
let tlsSelfSigned: MemcachedProcess;
let tlsOtherName: MemcachedProcess;
let plain: MemcachedProcess;
let silent: Server;
let silentPort: number;
const silentSockets = new Set<Socket>();

beforeAll(async () => {
  const good = ca.issue(['localhost', '127.0.0.1']);
  [tlsGood, tlsSelfSigned, tlsOtherName, plain] = await Promise.all([
    startMemcached({ tls: { ...good, caFile: ca.caFile } }),
    (async () => {
      // Self-signed: the probe that waits for it to start trusts the certificate itself.
      const self = ca.selfSigned(['localhost', '127.0.0.1']);
      return startMemcached({ tls: { ...self, caFile: self.certFile } });
    })(),
    startMemcached({
      tls: { ...ca.issue(['other.example']), caFile: ca.caFile, serverName: 'other.example' },
    }),
    startMemcached(),
  ]);
  servers.push(tlsGood, tlsSelfSigned, tlsOtherName, plain);
  // Accepts connections and never says a word (a security group that lets SYN through, a hung node).
  silent = createServer((socket) => {
    silentSockets.add(socket);
    socket.on('error', () => {});
  });
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  silentPort = (silent.address() as AddressInfo).port;
}, 30_000);

afterAll(async () => {
  for (const socket of silentSockets) socket.destroy();
  await new Promise<void>((resolve) => silent.close(() => resolve()));
  await Promise.all(servers.map((s) => s.stop()));
  ca.remove();
});

const trustTestCa: TlsSettings = { ca: ca.caPem };

type Build = (node: NodeAddress, tls: TlsSettings | false) => KeyValueStore;
const adapters: Array<[string, Build]> = [
  [
    'text protocol',
    (node, tls) =>
      new TextMemcachedStore({ node, tls, timeoutMs: TIMEOUT_MS, connectAllowanceMs: CONNECT_ALLOWANCE_MS }),
  ],
  [
    'binary protocol (memjs)',
    (node, tls) =>
      new MemcachedStore({
        servers: [`${node.host}:${node.port}`],
        timeoutMs: TIMEOUT_MS,
        onDiagnostic: () => {},
        socket: { factory: nodeSocketFactory(node, tls), tls: tls !== false },
      }),
  ],
];

async function expectFailure(store: KeyValueStore, message: RegExp): Promise<void> {
  const started = performance.now();
  const err = await failure(store.get('wts:v1:tls-check'));
  const elapsedMs = performance.now() - started;
  await store.close();
  expect(err.code).toBe('cache_unavailable');
  expect(err.message).toMatch(message);
  expect(elapsedMs).toBeLessThan(WORST_CASE_MS);
}

describe.each(adapters)('%s over TLS', (_name, build) => {
  it('works against a server whose certificate the client trusts (the control)', async () => {
    const store = build({ host: 'localhost', port: tlsGood.port, ip: '127.0.0.1' }, trustTestCa);
    await store.set('wts:v1:tls-check', 'ok', 60);
    expect(await store.get('wts:v1:tls-check')).toBe('ok');
    await store.close();
  });

  it('fails naming an untrusted certificate (self-signed)', async () => {
    await expectFailure(
      build({ host: 'localhost', port: tlsSelfSigned.port, ip: '127.0.0.1' }, trustTestCa),
      /TLS: the server certificate is not trusted \([A-Z_]+\).*NODE_EXTRA_CA_CERTS/,
    );
  });

  it('fails naming a certificate issued for another host name', async () => {
    await expectFailure(
      build({ host: 'localhost', port: tlsOtherName.port, ip: '127.0.0.1' }, trustTestCa),
      /TLS: the server certificate does not name the host .*ERR_TLS_CERT_ALTNAME_INVALID/,
    );
  });

  it('fails naming a plain-TCP server behind MEMCACHED_TLS=true', async () => {
    await expectFailure(
      build({ host: 'localhost', port: plain.port, ip: '127.0.0.1' }, trustTestCa),
      /did not answer the TLS handshake with TLS .*set MEMCACHED_TLS=false/,
    );
  });

  it('fails naming a TLS server behind MEMCACHED_TLS=false', async () => {
    await expectFailure(
      build({ host: 'localhost', port: tlsGood.port, ip: '127.0.0.1' }, false),
      /(reset|closed) the connection before answering.*set MEMCACHED_TLS=true/,
    );
  });

  it('gives up on a server that never completes the handshake within the timeout', async () => {
    await expectFailure(
      build({ host: 'localhost', port: silentPort, ip: '127.0.0.1' }, trustTestCa),
      // memjs counts the handshake in its timeout; the text adapter adds its connect allowance.
      new RegExp(`no answer within (${TIMEOUT_MS}|${TIMEOUT_MS + CONNECT_ALLOWANCE_MS}) ms`),
    );
  });
});

describe('Auto Discovery over TLS', () => {
  const discover = (port: number, tls: TlsSettings | false) =>
    new ConfigEndpoint({
      endpoint: { host: 'localhost', port, ip: '127.0.0.1' },
      tls,
      timeoutMs: TIMEOUT_MS,
      connectAllowanceMs: CONNECT_ALLOWANCE_MS,
    });

  it.each([
    ['an untrusted certificate', () => tlsSelfSigned.port, trustTestCa, /certificate is not trusted/],
    [
      'a plain-TCP endpoint behind MEMCACHED_TLS=true',
      () => plain.port,
      trustTestCa,
      /set MEMCACHED_TLS=false/,
    ],
    ['a TLS endpoint behind MEMCACHED_TLS=false', () => tlsGood.port, false, /set MEMCACHED_TLS=true/],
  ] as const)('fails naming %s', async (_what, port, tls, message) => {
    const endpoint = discover(port(), tls);
    const started = performance.now();
    const err = await failure(endpoint.fetch());
    expect(performance.now() - started).toBeLessThan(WORST_CASE_MS);
    endpoint.close();
    expect(err.code).toBe('cache_unavailable');
    expect(err.message).toMatch(/^Memcached Auto Discovery failed: /);
    expect(err.message).toMatch(message);
  });
});
