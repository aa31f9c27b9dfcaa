/**
 * {@link KeyValueStore} over a multi-node cluster: each key lives on the node ketama picks for it
 * (ketama.ts), so every instance puts an appid's lock and record on the same node. The node list is
 * fixed (several MEMCACHED_SERVERS entries) or comes from Auto Discovery (discovery.ts), asked at the
 * first call and again every interval (60 s by default); calls wait for it only when the list is
 * older than two intervals (a Lambda instance thawed after a long freeze), otherwise it is refreshed
 * behind them.
 *
 * ## Why a change of the node list needs a rule
 *
 * The lock is an `add` on one node. When the list changes from L0 to L1, a key K may move from node
 * n0 to node n1, and for a while instances disagree about where K lives: an instance still on L0
 * (it asks again within two intervals) takes the lock on n0, a peer already on L1 takes it on n1,
 * both win, and both fetch — the very failure this service exists to prevent. Worse, a Lambda
 * instance that starts after the change has never seen L0 at all:
 *
 *   t0   A (on L0) add(lock K) on n0                  → stored: A fetches
 *   t0   the cluster changes; discovery now answers L1
 *   t1   C starts cold, discovers L1, add(lock K) on n1 → stored: C fetches too
 *   t2   A's token is killed 300 s after C's fetch, before the expiry A promised
 *
 * Records move the same way: C reads K's record on n1, finds nothing, and takes it for lost.
 *
 * ## The rule
 *
 * 1. A topology journal, so that no instance routes without knowing every list in use. Each instance,
 *    whenever it reads the node list (first call, then every interval), first writes that list to
 *    every node of it under `<journal prefix>:<version>` (ElastiCache raises the version at every
 *    change, so a version names one list; TTL: {@link JOURNAL_RETENTION_SECONDS}),
 *    then reads the journal keys of nearby versions from every node of it, and only then routes.
 *    Write-then-read on a node both lists share means that of two instances on different lists, at
 *    least one sees the other's list (per-node operations are linearizable), and the one that sees
 *    a list it did not know takes it into its set of *known lists*.
 * 2. A key is owned by its node under every known list. Writes (`set`, `add`, `delete`,
 *    `increment`) go to every owner: an `add` succeeds only if it succeeds on all of them, oldest
 *    list first, and is undone where it did succeed if one refuses. So two contenders on different
 *    lists always meet on the owner under the older list, which both of them write.
 * 3. Reads prefer the owner under the oldest list while that list may still be in sole use (for
 *    {@link ClusterStoreOptions.intervalMs} × 2 + one lock lease + 5 s after this instance learnt it
 *    was superseded): an instance still on L0 writes only there. After that, every writer writes
 *    every owner, and reads prefer the newest list's owner. Either way a miss on one owner is asked of
 *    the next, so a record that moved is found on its old node (writes go to both until the journal
 *    forgets the old list, {@link JOURNAL_RETENTION_SECONDS} after its last user, longer than a
 *    record lives, so every record gets rewritten to its new node in the meantime).
 * 4. A node that left the list and refuses connections, or cannot be reached at all, is skipped
 *    once nothing can still use it alone (the window of rule 3); before that, a failure on it is a
 *    failure (`cache_unavailable`), as on any node. A node that refuses connections is gone for
 *    everyone, so it is skipped at once.
 *
 * The timeline again, with the rule:
 *
 *   t0   A (on L0, journal entry v0 on every node of L0) add(lock K) on n0 → stored
 *   t1   C starts: writes v1 to every node of L1, reads the journal, finds v0 → knows L0 and L1
 *   t1   C add(lock K): on n0 first (owner under the older list) → refused: C waits for A's record
 *   t2   A writes K's record on n0; C reads n0 first (L0 is still in its window) → A's record
 *   t3   A asks again, learns L1: from now on A writes both n0 and n1
 *   t4   two intervals + one lease after t1, nobody routes with L0 alone; reads prefer n1
 *
 * What it does not cover: a node removed from the list while still alive and reachable for some
 * instances but not for others, past the window; counters (`increment`) that an instance still on
 * L0 raised on n0 only are read back as the larger of the owners' counts, not their sum.
 */
import { ServiceError } from '../errors.ts';
import type { KeyValueStore } from '../ports.ts';
import { isUnreachable, type NodeAddress, nodeName } from './connection.ts';
import { type ClusterConfig, parseClusterConfig } from './discovery.ts';
import { KetamaRing } from './ketama.ts';

/** How long a list's journal entry outlives its last user: longer than any record (7200 s) lives. */
export const JOURNAL_RETENTION_SECONDS = 3 * 3600;
/** Journal versions read on each side of the newest known version. */
const JOURNAL_PROBE = 4;
/** A node that left the list and refused a connection is not asked again for this long. */
const UNREACHABLE_MEMO_MS = 5_000;
/** After a failed discovery round, no new round starts for this long (calls do not hammer the endpoint). */
const RETRY_AFTER_MS = 1_000;

/** Where the node list comes from. */
export type NodeListSource =
  | { kind: 'static'; nodes: NodeAddress[] }
  | { kind: 'discovery'; endpoint: { fetch(): Promise<ClusterConfig>; close(): void } };

/** The node list's source, the per-node adapter factory and the timings of the rule above. */
export interface ClusterStoreOptions {
  source: NodeListSource;
  /** Builds the adapter of one node (memjs or text protocol, plain or TLS). */
  connect(node: NodeAddress): KeyValueStore;
  /** How often the node list is asked for (discovery only); 60 000 by default. */
  intervalMs?: number;
  /** The refresh lock's lease, whole seconds: part of the transition window (rule 3). */
  lockLeaseSeconds: number;
  /** Prefix of the topology journal keys, e.g. `wts:topology`. */
  journalPrefix: string;
  now?: () => number;
  /** Node list changes and discovery failures, for the log (may name nodes; never values). */
  onDiagnostic?: (detail: string) => void;
}

/** What /healthz may show about the cluster: counts only, no host names. */
export interface ClusterDescription {
  /** Nodes in the newest list. */
  nodes: number;
  /** The newest list's configuration version (0 for a fixed list). */
  version: number;
  /** Lists still known (more than 1 while a change of the list is being bridged). */
  lists: number;
}

interface KnownList {
  /** The sorted node names: two answers with the same nodes are the same list. */
  id: string;
  version: number;
  nodes: NodeAddress[];
  names: ReadonlySet<string>;
  ring: KetamaRing;
  /** Last time the configuration endpoint or the journal showed this list. */
  seenAtMs: number;
  /** When this instance first knew a newer list; null for the newest. */
  supersededAtMs: number | null;
}

interface Owner {
  name: string;
  /** The newest known list that places the key on this node. */
  list: KnownList;
}

/**
 * The cluster router (see the header). Calls fail with `cache_unavailable` when a node that holds
 * the key cannot answer or the node list cannot be confirmed, `config_invalid` when the configured
 * endpoint is not a configuration endpoint.
 */
export class ClusterStore implements KeyValueStore {
  readonly #options: ClusterStoreOptions;
  readonly #now: () => number;
  readonly #intervalMs: number;
  /** Calls wait for a fresh node list past this age. */
  readonly #maxAgeMs: number;
  /** How long a superseded list may still be in sole use somewhere (rule 3). */
  readonly #windowMs: number;
  /** Known lists, oldest version first; the last is the newest. */
  #lists: KnownList[] = [];
  #confirmedAtMs = Number.NEGATIVE_INFINITY;
  #refreshing: Promise<void> | undefined;
  /** The last round's failure and when the next round may start. */
  #failure: { error: ServiceError; untilMs: number } | undefined;
  readonly #adapters = new Map<string, { address: NodeAddress; store: KeyValueStore }>();
  readonly #unreachableUntil = new Map<string, number>();
  #closed = false;

  constructor(options: ClusterStoreOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
    this.#intervalMs = options.intervalMs ?? 60_000;
    this.#maxAgeMs = 2 * this.#intervalMs;
    this.#windowMs = this.#maxAgeMs + options.lockLeaseSeconds * 1000 + 5_000;
    if (options.source.kind === 'static') {
      this.#learn(0, options.source.nodes, this.#now());
      this.#confirmedAtMs = Number.POSITIVE_INFINITY;
    }
  }

  /** The newest list as counts (for /healthz), or null before the first discovery answered. */
  describe(): ClusterDescription | null {
    const newest = this.#lists.at(-1);
    if (!newest) return null;
    return { nodes: newest.nodes.length, version: newest.version, lists: this.#lists.length };
  }

  async get(key: string): Promise<string | null> {
    return this.#read(await this.#owners(key), (store) => store.get(key));
  }

  async gets(key: string): Promise<{ value: string; cas: string } | null> {
    const owners = await this.#owners(key);
    if (owners.length === 1) {
      const owner = owners[0] as Owner;
      const found = await this.#on(owner, (store) => store.gets(key));
      return found && { value: found.value, cas: encodeCas([[owner.name, found.cas]]) };
    }
    // Several owners: the value comes from the owner reads prefer; the version covers every owner
    // holding that same value, so that deleteIfUnchanged removes all the copies this call saw.
    const answers = await this.#everyOwner(owners, (store) => store.gets(key));
    const found = this.#readOrder(owners)
      .map((owner) => answers.get(owner.name))
      .find((answer) => answer !== undefined && answer !== null);
    if (!found) return null;
    const copies = owners.flatMap((owner): Array<[string, string]> => {
      const answer = answers.get(owner.name);
      return answer && answer.value === found.value ? [[owner.name, answer.cas]] : [];
    });
    return { value: found.value, cas: encodeCas(copies) };
  }

  async set(key: string, value: string, ttlSeconds: number): Promise<void> {
    await this.#everyOwner(await this.#owners(key), (store) => store.set(key, value, ttlSeconds));
  }

  async delete(key: string): Promise<void> {
    await this.#everyOwner(await this.#owners(key), (store) => store.delete(key));
  }

  async increment(key: string, ttlSeconds: number): Promise<number> {
    const counts = await this.#everyOwner(await this.#owners(key), (store) =>
      store.increment(key, ttlSeconds),
    );
    return Math.max(...counts.values());
  }

  /** Rule 2: stored on every owner, oldest list first, or on none. */
  async add(key: string, value: string, ttlSeconds: number): Promise<boolean> {
    const owners = await this.#owners(key);
    const stored: Owner[] = [];
    for (const owner of owners) {
      let added: boolean;
      try {
        added = await this.#on(owner, (store) => store.add(key, value, ttlSeconds));
      } catch (err) {
        if (this.#skippable(owner, err)) continue;
        await this.#undoAdd(stored, key, value);
        throw err;
      }
      if (!added) {
        await this.#undoAdd(stored, key, value);
        return false;
      }
      stored.push(owner);
    }
    if (stored.length === 0) throw noOwnerAnswered('add');
    return true;
  }

  async deleteIfUnchanged(key: string, cas: string): Promise<boolean> {
    const copies = decodeCas(cas);
    await this.#ensureFresh();
    let removed = true;
    let asked = 0;
    for (const [name, unique] of copies) {
      const adapter = this.#adapters.get(name);
      if (!adapter) continue; // the node left every known list: its copy is gone with it
      asked++;
      if (!(await adapter.store.deleteIfUnchanged(key, unique))) removed = false;
    }
    return asked > 0 && removed;
  }

  async close(): Promise<void> {
    this.#closed = true;
    if (this.#options.source.kind === 'discovery') this.#options.source.endpoint.close();
    await Promise.all([...this.#adapters.values()].map((a) => a.store.close()));
    this.#adapters.clear();
  }

  // ---- routing -------------------------------------------------------------------------------

  /** The owners of `key`, oldest list first, each node once. */
  async #owners(key: string): Promise<Owner[]> {
    await this.#ensureFresh();
    const owners: Owner[] = [];
    for (const list of this.#lists) {
      const name = list.ring.nodeFor(key);
      const seen = owners.find((o) => o.name === name);
      if (seen) seen.list = list;
      else owners.push({ name, list });
    }
    return owners;
  }

  /** Rule 3: the oldest owner first while its list may be in sole use somewhere, else the newest. */
  #readOrder(owners: Owner[]): Owner[] {
    const now = this.#now();
    const inWindow = owners.some(
      (o) => o.list.supersededAtMs !== null && now < o.list.supersededAtMs + this.#windowMs,
    );
    return inWindow ? owners : [...owners].reverse();
  }

  async #read<T>(owners: Owner[], read: (store: KeyValueStore) => Promise<T | null>): Promise<T | null> {
    let answered = false;
    for (const owner of this.#readOrder(owners)) {
      let value: T | null;
      try {
        value = await this.#on(owner, read);
      } catch (err) {
        if (this.#skippable(owner, err)) continue;
        throw err;
      }
      answered = true;
      if (value !== null) return value;
    }
    if (!answered) throw noOwnerAnswered('get');
    return null;
  }

  /** Runs `op` on every owner at once; skippable failures are left out, any other one is thrown. */
  async #everyOwner<T>(owners: Owner[], op: (store: KeyValueStore) => Promise<T>): Promise<Map<string, T>> {
    const settled = await Promise.allSettled(owners.map((owner) => this.#on(owner, op)));
    const results = new Map<string, T>();
    let failure: unknown;
    settled.forEach((outcome, i) => {
      const owner = owners[i] as Owner;
      if (outcome.status === 'fulfilled') results.set(owner.name, outcome.value);
      else if (!this.#skippable(owner, outcome.reason)) failure ??= outcome.reason;
    });
    if (failure !== undefined) throw failure;
    if (results.size === 0) throw noOwnerAnswered('write');
    return results;
  }

  /** Removes what a refused `add` stored on the owners before the one that refused: our value only. */
  async #undoAdd(stored: Owner[], key: string, value: string): Promise<void> {
    await Promise.all(
      stored.map(async (owner) => {
        try {
          const found = await this.#on(owner, (store) => store.gets(key));
          if (found?.value === value)
            await this.#on(owner, (store) => store.deleteIfUnchanged(key, found.cas));
        } catch {
          // The copy expires with its TTL; until then it only delays the next contender.
        }
      }),
    );
  }

  /** Calls `op` on the node of `owner`, unless it left the list and refused connections just now. */
  async #on<T>(owner: Owner, op: (store: KeyValueStore) => Promise<T>): Promise<T> {
    const until = this.#unreachableUntil.get(owner.name);
    if (until !== undefined && this.#now() < until) {
      throw new ServiceError('cache_unavailable', 'Memcached node left the cluster and refuses connections', {
        cause: new UnreachableNode(),
      });
    }
    try {
      return await op(this.#adapter(owner.name));
    } catch (err) {
      if (isUnreachable(err) && !this.#newest().names.has(owner.name)) {
        this.#unreachableUntil.set(owner.name, this.#now() + UNREACHABLE_MEMO_MS);
      }
      throw err;
    }
  }

  /** Rule 4. */
  #skippable(owner: Owner, err: unknown): boolean {
    if (this.#newest().names.has(owner.name)) return false;
    if (isUnreachable(err) || (err instanceof ServiceError && err.cause instanceof UnreachableNode))
      return true;
    const leftAtMs = Math.max(
      ...this.#lists
        .filter((l) => l.names.has(owner.name))
        .map((l) => l.supersededAtMs ?? Number.POSITIVE_INFINITY),
    );
    return this.#now() >= leftAtMs + this.#windowMs;
  }

  #adapter(name: string): KeyValueStore {
    const adapter = this.#adapters.get(name);
    if (adapter) return adapter.store;
    if (this.#closed) throw new ServiceError('cache_unavailable', 'the store is closed');
    const address = [...this.#lists]
      .reverse()
      .flatMap((l) => l.nodes)
      .find((n) => nodeName(n) === name);
    if (!address) throw new ServiceError('cache_unavailable', 'Memcached node is in no known node list');
    const store = this.#options.connect(address);
    this.#adapters.set(name, { address, store });
    return store;
  }

  #newest(): KnownList {
    return this.#lists.at(-1) as KnownList;
  }

  // ---- the node list -------------------------------------------------------------------------

  async #ensureFresh(): Promise<void> {
    if (this.#options.source.kind === 'static') return;
    const now = this.#now();
    const age = now - this.#confirmedAtMs;
    if (age < this.#intervalMs) return;
    const failure = this.#failure;
    const mayAsk = !failure || now >= failure.untilMs;
    if (age < this.#maxAgeMs) {
      if (mayAsk) void this.#refresh().catch(() => {}); // diagnosed inside; the current list is still good
      return;
    }
    if (!mayAsk && !this.#refreshing) throw (failure as { error: ServiceError }).error;
    await this.#refresh();
  }

  /** One discovery round, shared by concurrent callers. */
  #refresh(): Promise<void> {
    this.#refreshing ??= this.#discover()
      .catch((err: unknown) => {
        const error =
          err instanceof ServiceError
            ? err
            : new ServiceError('cache_unavailable', 'Memcached Auto Discovery failed', { cause: err });
        this.#failure = { error, untilMs: this.#now() + RETRY_AFTER_MS };
        this.#diagnose(`discovery round failed: ${error.message}`);
        throw error;
      })
      .finally(() => {
        this.#refreshing = undefined;
      });
    return this.#refreshing;
  }

  /** Rule 1: ask the endpoint, write our list to the journal, read the journal, then route. */
  async #discover(): Promise<void> {
    const { source } = this.#options;
    if (source.kind !== 'discovery') return;
    let config: ClusterConfig | undefined;
    let configError: unknown;
    try {
      config = await source.endpoint.fetch();
    } catch (err) {
      configError = err;
    }
    const newest = this.#lists.at(-1);
    if (!config && !newest) throw configError;
    const nodes = config ? config.nodes : (newest as KnownList).nodes;
    const names = nodes.map(nodeName);
    const ttl = JOURNAL_RETENTION_SECONDS;

    if (config) {
      const entry = encodeJournal(config);
      const key = this.#journalKey(config.version);
      // Each node call is bounded by its adapter; a node that fails here fails its calls below too.
      await Promise.allSettled(nodes.map((node) => this.#connectTo(node).set(key, entry, ttl)));
    }

    const center = Math.max(config?.version ?? 0, ...this.#lists.map((l) => l.version));
    const versions: number[] = [];
    for (let v = Math.max(0, center - JOURNAL_PROBE); v <= center + JOURNAL_PROBE; v++) {
      if (v !== config?.version) versions.push(v);
    }
    const reads = await Promise.allSettled(
      nodes.flatMap((node) =>
        versions.map(async (v) => ({ v, text: await this.#connectTo(node).get(this.#journalKey(v)) })),
      ),
    );

    const now = this.#now();
    const answeredNodes = new Set<string>();
    const found: ClusterConfig[] = [];
    reads.forEach((outcome, i) => {
      if (outcome.status !== 'fulfilled') return;
      answeredNodes.add(names[Math.floor(i / versions.length)] as string);
      const { v, text } = outcome.value;
      if (text === null) return;
      try {
        const entry = parseClusterConfig(Buffer.from(text, 'latin1'));
        if (entry.version === v) found.push(entry);
      } catch {
        this.#diagnose(`ignored an invalid topology journal entry for version ${v}`);
      }
    });
    if (!config && answeredNodes.size === 0) {
      const why = configError instanceof Error ? configError.message : String(configError);
      throw new ServiceError(
        'cache_unavailable',
        `Memcached Auto Discovery failed and no node answered, so the node list cannot be confirmed: ${why.slice(0, 200)}`,
        { cause: configError },
      );
    }
    if (configError) {
      const why = configError instanceof Error ? configError.message : String(configError);
      this.#diagnose(`discovery failed, the journal confirmed the lists: ${why.slice(0, 200)}`);
    }

    if (config) this.#learn(config.version, config.nodes, now);
    for (const entry of found) this.#learn(entry.version, entry.nodes, now);
    // A list nobody wrote to the journal any more (its entry expired on nodes that answered) is forgotten.
    const before = this.#lists.length;
    this.#lists = this.#lists.filter(
      (l, i) =>
        i === this.#lists.length - 1 ||
        now - l.seenAtMs < this.#maxAgeMs ||
        ![...l.names].some((n) => answeredNodes.has(n)),
    );
    if (this.#lists.length !== before)
      this.#diagnose(`forgot ${before - this.#lists.length} old node list(s)`);
    this.#dropUnusedAdapters();
    this.#confirmedAtMs = now;
    this.#failure = undefined;
  }

  /** Takes a list into the known lists (or refreshes when it was seen), keeping them ordered by version. */
  #learn(version: number, nodes: NodeAddress[], now: number): void {
    const names = nodes.map(nodeName);
    const id = [...names].sort().join(',');
    const known = this.#lists.find((l) => l.id === id);
    if (known) {
      known.seenAtMs = now;
      known.version = Math.max(known.version, version);
      // A replaced node keeps its name and may get a new IP: the newest list's address wins.
      if (version >= known.version) known.nodes = nodes;
    } else {
      this.#lists.push({
        id,
        version,
        nodes,
        names: new Set(names),
        ring: new KetamaRing(names),
        seenAtMs: now,
        supersededAtMs: null,
      });
      this.#diagnose(`node list version ${version} with ${nodes.length} node(s) is known`);
    }
    this.#lists.sort((a, b) => a.version - b.version);
    this.#lists.forEach((l, i) => {
      if (i < this.#lists.length - 1) l.supersededAtMs ??= now;
      else l.supersededAtMs = null;
    });
  }

  /** The adapter of a node by address (journal writes go to the nodes of the answer just read). */
  #connectTo(node: NodeAddress): KeyValueStore {
    const name = nodeName(node);
    const adapter = this.#adapters.get(name);
    if (adapter && adapter.address.ip === node.ip) return adapter.store;
    if (adapter) void adapter.store.close();
    const store = this.#options.connect(node);
    this.#adapters.set(name, { address: node, store });
    return store;
  }

  #dropUnusedAdapters(): void {
    const names = new Set(this.#lists.flatMap((l) => [...l.names]));
    for (const [name, adapter] of this.#adapters) {
      if (names.has(name)) continue;
      void adapter.store.close();
      this.#adapters.delete(name);
      this.#unreachableUntil.delete(name);
    }
  }

  #journalKey(version: number): string {
    return `${this.#options.journalPrefix}:${version}`;
  }

  #diagnose(detail: string): void {
    this.#options.onDiagnostic?.(`cluster: ${detail}`);
  }
}

/** Marks the failure of a call not made because its node refused connections moments ago. */
class UnreachableNode extends Error {
  override readonly name = 'UnreachableNode';
  readonly code = 'ECONNREFUSED';
}

function noOwnerAnswered(operation: string): ServiceError {
  return new ServiceError(
    'cache_unavailable',
    `Memcached ${operation} failed: no node holding the key answered`,
  );
}

/** A journal entry: the configuration endpoint's own format, parsed by the same strict parser. */
function encodeJournal(config: ClusterConfig): string {
  return `${config.version}\n${config.nodes.map((n) => `${n.host}|${n.ip ?? ''}|${n.port}`).join(' ')}\n`;
}

/** The composite CAS: `<node>=<unique>` per copy, space-separated (node names hold neither). */
function encodeCas(copies: Array<[string, string]>): string {
  return copies.map(([name, cas]) => `${name}=${cas}`).join(' ');
}

function decodeCas(cas: string): Array<[string, string]> {
  const copies = cas.split(' ').map((part): [string, string] => {
    const at = part.lastIndexOf('=');
    return [part.slice(0, at), part.slice(at + 1)];
  });
  if (cas.length > 4096 || copies.some(([name, unique]) => name === '' || unique === '')) {
    throw new Error(`invalid CAS value of length ${cas.length}`);
  }
  return copies;
}
