/**
 * buildContainer's choice of store for each cache topology, seen through what /healthz reports and
 * the store's class. Nothing here talks to a cache: stores connect on their first call (a single
 * text-protocol node starts connecting at once, to a closed loopback port here).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { buildContainer, type Container } from '../../handler/container.ts';
import { ClusterStore } from '../../lib/store/cluster.ts';
import { MemcachedStore } from '../../lib/store/memcached.ts';
import { TextMemcachedStore } from '../../lib/store/memcached-text.ts';
import { MemoryStore } from '../../lib/store/memory.ts';
import { TEST_APPID, TEST_SECRET } from '../support/secrets.ts';

const LOCAL = { WECHAT_APPID: TEST_APPID, WECHAT_APPSECRET: TEST_SECRET };
let container: Container | undefined;
afterEach(async () => {
  await container?.store.close();
  container = undefined;
});
const build = (env: Record<string, string>) => {
  container = buildContainer({ env: { ...LOCAL, ...env }, writeLog: () => {} });
  return container;
};

describe('buildContainer’s store', () => {
  it('is the in-process store without MEMCACHED_SERVERS', () => {
    const c = build({});
    expect(c.store).toBeInstanceOf(MemoryStore);
    expect(c.cacheTopology()).toEqual({
      kind: 'memory',
      nodes: 1,
      protocol: null,
      tls: false,
      auto_discovery: false,
    });
  });

  it('is memjs for one node with the binary protocol (the default)', () => {
    const c = build({ MEMCACHED_SERVERS: '127.0.0.1:1' });
    expect(c.store).toBeInstanceOf(MemcachedStore);
    expect(c.cacheTopology()).toEqual({
      kind: 'memcached',
      nodes: 1,
      protocol: 'binary',
      tls: false,
      auto_discovery: false,
    });
  });

  it('is the text-protocol adapter for one node with MEMCACHED_PROTOCOL=text, over TLS when asked', () => {
    const c = build({ MEMCACHED_SERVERS: '127.0.0.1:1', MEMCACHED_PROTOCOL: 'text', MEMCACHED_TLS: 'true' });
    expect(c.store).toBeInstanceOf(TextMemcachedStore);
    expect(c.cacheTopology()).toMatchObject({ nodes: 1, protocol: 'text', tls: true, auto_discovery: false });
  });

  it('is the ketama router for several nodes', () => {
    const c = build({ MEMCACHED_SERVERS: '127.0.0.1:1,127.0.0.2:1,127.0.0.3:1' });
    expect(c.store).toBeInstanceOf(ClusterStore);
    expect(c.cacheTopology()).toMatchObject({ nodes: 3, protocol: 'binary', auto_discovery: false });
  });

  it('is the ketama router with Auto Discovery for a configuration endpoint: no node until it has answered', () => {
    const c = build({ MEMCACHED_SERVERS: 'wts.abc123.cfg.use1.cache.amazonaws.com:11211' });
    expect(c.store).toBeInstanceOf(ClusterStore);
    expect(c.cacheTopology()).toEqual({
      kind: 'memcached',
      nodes: 0,
      protocol: 'binary',
      tls: false,
      auto_discovery: true,
    });
  });
});
