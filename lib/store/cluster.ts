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
 * 1. A topology journal (node-lists.ts), so that no instance routes without knowing every list in use. Each instance,
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
import { isUnreachable, type NodeAddress } from './connection.ts';
import { type KnownList, type NodeListSource, NodeLists } from './node-lists.ts';

export { JOURNAL_RETENTION_SECONDS, type NodeListSource } from './node-lists.ts';

/** A node that left the list and refused a connection is not asked again for this long. */
const UNREACHABLE_MEMO_MS = 5_000;

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
  readonly #now: () => number;
  readonly #nodes: NodeLists;
  /** How long a superseded list may still be in sole use somewhere (rule 3). */
  readonly #windowMs: number;

  constructor(options: ClusterStoreOptions) {
    this.#now = options.now ?? Date.now;
    const onDiagnostic = options.onDiagnostic;
    this.#nodes = new NodeLists({
      source: options.source,
      connect: options.connect,
      intervalMs: options.intervalMs ?? 60_000,
      journalPrefix: options.journalPrefix,
      now: this.#now,
      diagnose: (detail) => onDiagnostic?.(`cluster: ${detail}`),
    });
    this.#windowMs = this.#nodes.maxAgeMs + options.lockLeaseSeconds * 1000 + 5_000;
  }

  /** The newest list as counts (for /healthz), or null before the first discovery answered. */
  describe(): ClusterDescription | null {
    const newest = this.#nodes.newest();
    if (!newest) return null;
    return { nodes: newest.nodes.length, version: newest.version, lists: this.#nodes.lists.length };
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
    await this.#nodes.ensureFresh();
    let removed = true;
    let asked = 0;
    for (const [name, unique] of copies) {
      const store = this.#nodes.connected(name);
      if (!store) continue; // the node left every known list: its copy is gone with it
      asked++;
      if (!(await store.deleteIfUnchanged(key, unique))) removed = false;
    }
    return asked > 0 && removed;
  }

  close(): Promise<void> {
    return this.#nodes.close();
  }

  // ---- routing -------------------------------------------------------------------------------

  /** The owners of `key`, oldest list first, each node once. */
  async #owners(key: string): Promise<Owner[]> {
    await this.#nodes.ensureFresh();
    const owners: Owner[] = [];
    for (const list of this.#nodes.lists) {
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
    const until = this.#nodes.unreachableUntil.get(owner.name);
    if (until !== undefined && this.#now() < until) {
      throw new ServiceError('cache_unavailable', 'Memcached node left the cluster and refuses connections', {
        cause: new UnreachableNode(),
      });
    }
    try {
      return await op(this.#nodes.adapter(owner.name));
    } catch (err) {
      if (isUnreachable(err) && !this.#newest().names.has(owner.name)) {
        this.#nodes.unreachableUntil.set(owner.name, this.#now() + UNREACHABLE_MEMO_MS);
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
      ...this.#nodes.lists
        .filter((l) => l.names.has(owner.name))
        .map((l) => l.supersededAtMs ?? Number.POSITIVE_INFINITY),
    );
    return this.#now() >= leftAtMs + this.#windowMs;
  }

  #newest(): KnownList {
    return this.#nodes.newest() as KnownList;
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
