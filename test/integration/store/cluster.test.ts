/**
 * A change of the node list with real memcached nodes: an instance still on the old list and one that
 * started on the new list, both with real adapters (text protocol and memjs), meet on the old owner.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { KeyValueStore } from '../../../lib/ports.ts';
import { ClusterStore } from '../../../lib/store/cluster.ts';
import { type NodeAddress, nodeName } from '../../../lib/store/connection.ts';
import { ConfigEndpoint } from '../../../lib/store/discovery.ts';
import { KetamaRing } from '../../../lib/store/ketama.ts';
import { MemcachedStore } from '../../../lib/store/memcached.ts';
import { TextMemcachedStore } from '../../../lib/store/memcached-text.ts';
import { nodeSocketFactory } from '../../../lib/store/memjs-socket.ts';
import { type MemcachedProcess, startMemcached } from '../../../local/memcached-server.ts';
import {
  type ConfigNode,
  type LocalConfigEndpoint,
  startConfigEndpoint,
} from '../../support/config-endpoint.ts';

let nodes: MemcachedProcess[];
let all: ConfigNode[];
const endpoints: LocalConfigEndpoint[] = [];
const stores: KeyValueStore[] = [];

beforeAll(async () => {
  nodes = await Promise.all([1, 2, 3, 4].map((i) => startMemcached({ host: `127.0.0.${i}` })));
  all = nodes.map((mc, i) => ({ host: `node${i + 1}.wts.test`, ip: mc.host, port: mc.port }));
});
afterAll(async () => {
  await Promise.all(stores.map((s) => s.close()));
  await Promise.all([...nodes.map((n) => n.stop()), ...endpoints.map((e) => e.close())]);
});

const adapters: Array<[string, (node: NodeAddress) => KeyValueStore]> = [
  ['text protocol', (node) => new TextMemcachedStore({ node, tls: false, timeoutMs: 1000 })],
  [
    'binary protocol (memjs)',
    (node) =>
      new MemcachedStore({
        servers: [`${node.host}:${node.port}`],
        timeoutMs: 1000,
        onDiagnostic: () => {},
        socket: { factory: nodeSocketFactory(node, false), tls: false },
      }),
  ],
];

describe.each(adapters)('ClusterStore over %s nodes', (protocol, connect) => {
  const journalPrefix = `it-${protocol.replace(/\W+/g, '-')}:topology`;
  /** An instance whose configuration endpoint answers `lists`' last entry, at version `lists.length`. */
  async function instanceOn(...lists: ConfigNode[][]): Promise<ClusterStore> {
    const endpoint = await startConfigEndpoint(lists[0] as ConfigNode[]);
    for (const list of lists.slice(1)) endpoint.setNodes(list);
    endpoints.push(endpoint);
    const store = new ClusterStore({
      source: {
        kind: 'discovery',
        endpoint: new ConfigEndpoint({
          endpoint: { host: '127.0.0.1', port: endpoint.port, ip: null },
          tls: false,
          timeoutMs: 1000,
        }),
      },
      connect,
      lockLeaseSeconds: 10,
      journalPrefix,
    });
    stores.push(store);
    return store;
  }

  it('lets exactly one of an old-list instance and a new-list instance take each of 50 moved locks', async () => {
    const before = all.slice(0, 3);
    const a = await instanceOn(before);
    await a.get('warm-up'); // on list 1, written to the journal of nodes 1–3
    const c = await instanceOn(before, all); // started after node 4 joined: version 2
    const oldRing = new KetamaRing(before.map(nodeName));
    const newRing = new KetamaRing(all.map(nodeName));
    const moved: string[] = [];
    for (let i = 0; moved.length < 50; i++) {
      const key = `it:${protocol.length}:lock:wx${i.toString(16).padStart(16, '0')}`;
      if (oldRing.nodeFor(key) !== newRing.nodeFor(key)) moved.push(key);
    }
    const results = await Promise.all(moved.flatMap((key) => [a.add(key, 'a', 10), c.add(key, 'c', 10)]));
    const winners = moved.map((_, i) => [results[2 * i], results[2 * i + 1]].filter(Boolean).length);
    expect(winners).toEqual(moved.map(() => 1));
    // Each holder is visible to the other: both read the owner under the older list first.
    for (const key of moved) expect(await a.get(key)).toBe(await c.get(key));
    expect(c.describe()).toEqual({ nodes: 4, version: 2, lists: 2 });
  });
});
