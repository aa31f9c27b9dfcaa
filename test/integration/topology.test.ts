/**
 * ElastiCache topologies end to end: separate processes running dist/index.js, as Lambda instances
 * are, against (1) memcached serving TLS and the text protocol only, as ElastiCache Serverless does,
 * and (2) three memcached nodes behind a local configuration endpoint (Auto Discovery, ketama), one
 * of which is killed and dropped from the node list.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { nodeName } from '../../lib/store/connection.ts';
import { KetamaRing } from '../../lib/store/ketama.ts';
import { TextMemcachedStore } from '../../lib/store/memcached-text.ts';
import { recordKeys } from '../../lib/token/record.ts';
import { type MemcachedProcess, startMemcached } from '../../local/memcached-server.ts';
import {
  type LocalSecretsManager,
  startLocalSecretsManager,
} from '../../local/stand-ins/secrets-manager-endpoint.ts';
import { startWeChatSimulator, type WeChatSimulator } from '../../local/stand-ins/wechat-simulator.ts';
import { createTestCa, type TestCa } from '../../local/test-ca.ts';
import {
  type ConfigNode,
  type LocalConfigEndpoint,
  startConfigEndpoint,
} from '../support/config-endpoint.ts';
import { CLASSIC_FIRST, httpV2, startWorld, uniquePrefix, type World } from '../support/fixtures.ts';
import { type Instance, instancePool } from '../support/instances.ts';
import { FLEET_APPS, TEST_APPID } from '../support/secrets.ts';

type TokenBody = { access_token: string; expires_in: number; expires_at: number };
type Proxy = { statusCode: number; body: string };

describe('ElastiCache Serverless-like: TLS and the text protocol only', () => {
  const pool = instancePool();
  let world: World;
  let ca: TestCa;
  let memcached: MemcachedProcess;

  beforeAll(async () => {
    ca = createTestCa();
    memcached = await startMemcached({
      protocol: 'ascii',
      tls: { ...ca.issue(['localhost', '127.0.0.1']), caFile: ca.caFile },
    });
    world = await startWorld();
  });
  afterEach(async () => {
    await pool.closeAll();
  });
  afterAll(async () => {
    await world.close();
    await memcached.stop();
    ca.remove();
  });

  const env = (extra: Record<string, string> = {}) =>
    world.env({
      MEMCACHED_SERVERS: `localhost:${memcached.port}`,
      MEMCACHED_TLS: 'true',
      MEMCACHED_PROTOCOL: 'text',
      // The test CA, as a private CA would be given to Lambda: Node's trust store plus this file.
      NODE_EXTRA_CA_CERTS: ca.caFile,
      CACHE_KEY_PREFIX: uniquePrefix('tls'),
      // Counted as classic fetches: a classic app's first fetch is classic here (the default would
      // fetch a missing record from the stable endpoint first).
      ...CLASSIC_FIRST,
      ...extra,
    });

  it('6 processes × 40 concurrent cold get_token make exactly 1 WeChat fetch, and every token is valid', async () => {
    world.sim.resetCounters();
    const procs = await pool.spawn(6, env());
    const bodies = await Promise.all(
      procs.flatMap((p) => Array.from({ length: 40 }, () => p.invoke<TokenBody>({ appid: TEST_APPID }))),
    );
    const fetches = world.sim.calls.token + world.sim.calls.stableToken;
    console.log(`TLS + text protocol: 6 processes × 40 calls → ${fetches} fetch, ${bodies.length} answers`);
    expect(bodies).toHaveLength(240);
    expect(world.sim.calls.token).toBe(1);
    expect(world.sim.calls.stableToken).toBe(0);
    const tokens = new Set(bodies.map((b) => b.access_token));
    expect(tokens.size).toBe(1);
    for (const token of tokens) expect(world.sim.tokenStatus(token)).toBe('valid');

    const health = await procs[0]!.invoke<Proxy>(httpV2('GET', '/healthz'));
    expect(health.statusCode).toBe(200);
    expect(JSON.parse(health.body)).toEqual({
      status: 'ok',
      cache: 'ok',
      topology: { kind: 'memcached', nodes: 1, protocol: 'text', tls: true, auto_discovery: false },
    });
  });

  it('an instance that does not trust the server certificate reports the cache unreachable on /healthz', async () => {
    const [instance] = await pool.spawn(1, env({ NODE_EXTRA_CA_CERTS: '' }));
    const health = await instance!.invoke<Proxy>(httpV2('GET', '/healthz'));
    expect(health.statusCode).toBe(503);
    expect(JSON.parse(health.body)).toMatchObject({ status: 'degraded', cache: 'unreachable' });
  });
});

describe('a node-based cluster behind its configuration endpoint (Auto Discovery, ketama)', () => {
  const SECRET_ID = 'wechat-token-service/fleet';
  const warmPool = instancePool();
  const coldPool = instancePool();
  let sim: WeChatSimulator;
  let secrets: LocalSecretsManager;
  let endpoint: LocalConfigEndpoint;
  let nodes: MemcachedProcess[];
  let configNodes: ConfigNode[];
  let warm: Instance[];
  const prefix = uniquePrefix('fleet');
  /** Every answer given, to check at the end against the tokens WeChat issued and killed. */
  const served: TokenBody[] = [];
  const recordKey = (appid: string) => recordKeys(prefix, 'access_token', appid).record;

  /** One caller per appid and instance, twice: 40 concurrent calls per instance. */
  async function storm(instances: Instance[]): Promise<TokenBody[]> {
    const bodies = await Promise.all(
      instances.flatMap((p) =>
        Array.from({ length: 40 }, (_, i) => p.invoke<TokenBody>({ appid: FLEET_APPS[i % 20]!.appid })),
      ),
    );
    for (const body of bodies)
      expect(typeof body.access_token, JSON.stringify(body).slice(0, 200)).toBe('string');
    served.push(...bodies);
    return bodies;
  }
  const fetchesOf = (appid: string) => sim.callsFor(appid).token + sim.callsFor(appid).stableToken;
  /** Which node (index into `nodes`) holds `key` according to the node list `list`. */
  const ownerIn = (list: ConfigNode[], key: string) => {
    const names = list.map((n) => nodeName(n));
    return list[names.indexOf(new KetamaRing(names).nodeFor(key))] as ConfigNode;
  };
  /** What a node really holds under `key`, read over a connection of its own. */
  async function readFrom(node: ConfigNode, key: string): Promise<string | null> {
    const store = new TextMemcachedStore({ node, tls: false, timeoutMs: 1000 });
    try {
      return await store.get(key);
    } finally {
      await store.close();
    }
  }

  beforeAll(async () => {
    nodes = await Promise.all([1, 2, 3].map((i) => startMemcached({ host: `127.0.0.${i}` })));
    // Host names are the nodes' names in the continuum, and ports are random: pick names under which
    // the 20 appids' records land on all three nodes, so that the spread below is the real placement.
    for (let attempt = 0; ; attempt++) {
      configNodes = nodes.map((mc, i) => ({
        host: `node${i + 1}-${attempt}.wts.test`,
        ip: mc.host,
        port: mc.port,
      }));
      const owners = new Set(FLEET_APPS.map((a) => ownerIn(configNodes, recordKey(a.appid)).host));
      if (owners.size === 3) break;
    }
    endpoint = await startConfigEndpoint(configNodes);
    sim = await startWeChatSimulator({ apps: FLEET_APPS });
    secrets = await startLocalSecretsManager({
      secrets: {
        [SECRET_ID]: JSON.stringify({ apps: FLEET_APPS.map((a) => ({ appid: a.appid, secret: a.secret })) }),
      },
    });
  });
  afterAll(async () => {
    await warmPool.closeAll();
    await coldPool.closeAll();
    await Promise.all([...nodes.map((n) => n.stop()), endpoint.close(), sim.close(), secrets.close()]);
  });

  const env = () => ({
    ...secrets.env(),
    WECHAT_SECRET_ID: SECRET_ID,
    WECHAT_API_BASE_URL: sim.baseUrl,
    MEMCACHED_SERVERS: endpoint.address,
    MEMCACHED_AUTO_DISCOVERY: 'true',
    MEMCACHED_DISCOVERY_INTERVAL_SECONDS: '1',
    // Every call reads the cache (the memory copy is still kept, for outages and write-backs).
    MEMORY_CACHE_SECONDS: '0',
    // Eight processes share two cores with the rest of the test run: at this load memjs's own request
    // timer (4× the timeout) fires at cold start and the cache counts as down, which is the outage
    // path's business (tested elsewhere), not placement's. Timeouts themselves are tested in store/.
    MEMCACHED_TIMEOUT_MS: '1000',
    CACHE_KEY_PREFIX: prefix,
    ...CLASSIC_FIRST,
  });

  it('a cold storm of 6 processes × 40 callers over 20 appids makes exactly 1 fetch per appid, with records on all three nodes', async () => {
    warm = await warmPool.spawn(6, env());
    const bodies = await storm(warm);
    const perAppid = FLEET_APPS.map((a) => fetchesOf(a.appid));
    console.log(
      `cluster cold storm: ${bodies.length} calls, fetches per appid ${[...new Set(perAppid)].join('/')}`,
    );
    expect(perAppid).toEqual(FLEET_APPS.map(() => 1));
    for (const app of FLEET_APPS) expect(sim.callsFor(app.appid).token).toBe(1);

    // Each record sits on the node ketama names, and nowhere else.
    const perNode = new Map<string, number>();
    for (const app of FLEET_APPS) {
      const owner = ownerIn(configNodes, recordKey(app.appid));
      perNode.set(owner.host, (perNode.get(owner.host) ?? 0) + 1);
      for (const node of configNodes) {
        const held = await readFrom(node, recordKey(app.appid));
        if (node === owner) expect(held).not.toBeNull();
        else expect(held).toBeNull();
      }
    }
    console.log(`records per node: ${[...perNode.values()].join(', ')}`);
    expect(perNode.size).toBe(3);

    const health = JSON.parse((await warm[0]!.invoke<Proxy>(httpV2('GET', '/healthz'))).body);
    expect(health.topology).toEqual({
      kind: 'memcached',
      nodes: 3,
      protocol: 'binary',
      tls: false,
      auto_discovery: true,
    });
  });

  it('a node killed and dropped from the node list costs no fetch: peers serve and write back what they hold', async () => {
    // The node holding the most records dies; the configuration endpoint then lists the other two.
    const counts = configNodes.map(
      (n) => FLEET_APPS.filter((a) => ownerIn(configNodes, recordKey(a.appid)) === n).length,
    );
    const victim = counts.indexOf(Math.max(...counts));
    const remaining = configNodes.filter((_, i) => i !== victim);
    await nodes[victim]!.kill();
    endpoint.setNodes(remaining);
    const before = FLEET_APPS.map((a) => fetchesOf(a.appid));

    // Right away: some instances still route to the dead node (served from memory), some already ask again.
    await storm(warm);
    // Past two discovery intervals every instance has the new list.
    await new Promise((resolve) => setTimeout(resolve, 2_500));
    await storm(warm);
    const health = JSON.parse((await warm[0]!.invoke<Proxy>(httpV2('GET', '/healthz'))).body);
    expect(health.topology.nodes).toBe(2);

    // The moved records were written back on their new nodes.
    for (const app of FLEET_APPS) {
      expect(await readFrom(ownerIn(remaining, recordKey(app.appid)), recordKey(app.appid))).not.toBeNull();
    }
    // Instances started after the change find every record.
    const cold = await coldPool.spawn(2, env());
    await storm(cold);

    const after = FLEET_APPS.map((a) => fetchesOf(a.appid));
    console.log(
      `node ${victim + 1} of 3 killed (${counts[victim]} records): ${after.reduce((s, n) => s + n, 0) - before.reduce((s, n) => s + n, 0)} fetches after`,
    );
    expect(after).toEqual(before);
  });

  it('kept every promise: one token per appid, none killed, each valid past the expiry it was served with', () => {
    const tokens = new Map<string, Set<string>>();
    for (const body of served) {
      const info = sim.tokenInfo(body.access_token);
      expect(info).toBeDefined();
      expect(info!.invalidatedAtMs).toBeUndefined();
      expect(info!.deadAtMs).toBeGreaterThanOrEqual(body.expires_at * 1000);
      tokens.set(info!.appid, (tokens.get(info!.appid) ?? new Set()).add(body.access_token));
    }
    expect(tokens.size).toBe(20);
    for (const set of tokens.values()) expect(set.size).toBe(1);
    console.log(`cluster: ${served.length} answers, 20 appids, 20 tokens, none killed`);
  });
});
