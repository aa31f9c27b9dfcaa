/**
 * The node lists a {@link ClusterStore} routes with, and one adapter per node: rule 1 of the
 * cluster rule (cluster.ts). A fixed list is known from the start; with Auto Discovery the list is
 * asked for at the first call and again every interval, written to the topology journal on every
 * node of it, and the journal's nearby versions read back, so that every list some instance may
 * still route with is known here.
 */
import { ServiceError } from '../errors.ts';
import type { KeyValueStore } from '../ports.ts';
import { type NodeAddress, nodeName } from './connection.ts';
import { type ClusterConfig, parseClusterConfig } from './discovery.ts';
import { KetamaRing } from './ketama.ts';

/** How long a list's journal entry outlives its last user: longer than any record (7200 s) lives. */
export const JOURNAL_RETENTION_SECONDS = 3 * 3600;
/** Journal versions read on each side of the newest known version. */
const JOURNAL_PROBE = 4;
/** After a failed discovery round, no new round starts for this long (calls do not hammer the endpoint). */
const RETRY_AFTER_MS = 1_000;

/** Where the node list comes from. */
export type NodeListSource =
  | { kind: 'static'; nodes: NodeAddress[] }
  | { kind: 'discovery'; endpoint: { fetch(): Promise<ClusterConfig>; close(): void } };

export interface NodeListsOptions {
  source: NodeListSource;
  /** Builds the adapter of one node (memjs or text protocol, plain or TLS). */
  connect(node: NodeAddress): KeyValueStore;
  /** How often the node list is asked for (discovery only). */
  intervalMs: number;
  /** Prefix of the topology journal keys, e.g. `wts:topology`. */
  journalPrefix: string;
  now: () => number;
  diagnose(detail: string): void;
}

export interface KnownList {
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

export class NodeLists {
  readonly #options: NodeListsOptions;
  /** Calls wait for a fresh node list past this age. */
  readonly maxAgeMs: number;
  /** Known lists, oldest version first; the last is the newest. */
  #lists: KnownList[] = [];
  #confirmedAtMs = Number.NEGATIVE_INFINITY;
  #refreshing: Promise<void> | undefined;
  /** The last round's failure and when the next round may start. */
  #failure: { error: ServiceError; untilMs: number } | undefined;
  readonly #adapters = new Map<string, { address: NodeAddress; store: KeyValueStore }>();
  /** Nodes that left the list and refused a connection, and until when they are not asked again. */
  readonly unreachableUntil = new Map<string, number>();
  #closed = false;

  constructor(options: NodeListsOptions) {
    this.#options = options;
    this.maxAgeMs = 2 * options.intervalMs;
    if (options.source.kind === 'static') {
      this.#learn(0, options.source.nodes, options.now());
      this.#confirmedAtMs = Number.POSITIVE_INFINITY;
    }
  }

  /** Known lists, oldest version first. */
  get lists(): readonly KnownList[] {
    return this.#lists;
  }

  newest(): KnownList | undefined {
    return this.#lists.at(-1);
  }

  /** Makes sure the known lists are recent enough to route with (see the cluster header). */
  async ensureFresh(): Promise<void> {
    if (this.#options.source.kind === 'static') return;
    const now = this.#options.now();
    const age = now - this.#confirmedAtMs;
    if (age < this.#options.intervalMs) return;
    const failure = this.#failure;
    const mayAsk = !failure || now >= failure.untilMs;
    if (age < this.maxAgeMs) {
      if (mayAsk) void this.#refresh().catch(() => {}); // diagnosed inside; the current list is still good
      return;
    }
    if (!mayAsk && !this.#refreshing) throw (failure as { error: ServiceError }).error;
    await this.#refresh();
  }

  /** The adapter of a node by name, built on first use from the newest list that names it. */
  adapter(name: string): KeyValueStore {
    const adapter = this.#adapters.get(name);
    if (adapter) return adapter.store;
    if (this.#closed) throw new ServiceError('cache_unavailable', 'the store is closed');
    const address = [...this.#lists]
      .reverse()
      .flatMap((l) => l.nodes)
      .find((n) => nodeName(n) === name);
    if (!address) throw new ServiceError('cache_unavailable', 'Memcached node is in no known node list');
    return this.#connectTo(address);
  }

  /** The adapter of a node already connected, if any (a node in no known list has none). */
  connected(name: string): KeyValueStore | undefined {
    return this.#adapters.get(name)?.store;
  }

  async close(): Promise<void> {
    this.#closed = true;
    if (this.#options.source.kind === 'discovery') this.#options.source.endpoint.close();
    await Promise.all([...this.#adapters.values()].map((a) => a.store.close()));
    this.#adapters.clear();
  }

  /** One discovery round, shared by concurrent callers. */
  #refresh(): Promise<void> {
    this.#refreshing ??= this.#discover()
      .catch((err: unknown) => {
        const error =
          err instanceof ServiceError
            ? err
            : new ServiceError('cache_unavailable', 'Memcached Auto Discovery failed', { cause: err });
        this.#failure = { error, untilMs: this.#options.now() + RETRY_AFTER_MS };
        this.#options.diagnose(`discovery round failed: ${error.message}`);
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

    const now = this.#options.now();
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
        this.#options.diagnose(`ignored an invalid topology journal entry for version ${v}`);
      }
    });
    if (!config && answeredNodes.size === 0) {
      throw new ServiceError(
        'cache_unavailable',
        `Memcached Auto Discovery failed and no node answered, so the node list cannot be confirmed: ${reason(configError)}`,
        { cause: configError },
      );
    }
    if (configError) {
      this.#options.diagnose(`discovery failed, the journal confirmed the lists: ${reason(configError)}`);
    }

    if (config) this.#learn(config.version, config.nodes, now);
    for (const entry of found) this.#learn(entry.version, entry.nodes, now);
    // A list nobody wrote to the journal any more (its entry expired on nodes that answered) is forgotten.
    const before = this.#lists.length;
    this.#lists = this.#lists.filter(
      (l, i) =>
        i === this.#lists.length - 1 ||
        now - l.seenAtMs < this.maxAgeMs ||
        ![...l.names].some((n) => answeredNodes.has(n)),
    );
    if (this.#lists.length !== before)
      this.#options.diagnose(`forgot ${before - this.#lists.length} old node list(s)`);
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
      this.#options.diagnose(`node list version ${version} with ${nodes.length} node(s) is known`);
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
      this.unreachableUntil.delete(name);
    }
  }

  #journalKey(version: number): string {
    return `${this.#options.journalPrefix}:${version}`;
  }
}

function reason(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).slice(0, 200);
}

/** A journal entry: the configuration endpoint's own format, parsed by the same strict parser. */
function encodeJournal(config: ClusterConfig): string {
  return `${config.version}\n${config.nodes.map((n) => `${n.host}|${n.ip ?? ''}|${n.port}`).join(' ')}\n`;
}
