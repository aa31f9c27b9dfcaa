/**
 * Cache outage: Memcached cannot be asked. Serve the memory copy while it is valid; otherwise fetch
 * without the shared lock — under the default policy a stable token, which no classic fetch
 * invalidates — shared by the concurrent requests of this instance. When Memcached answers again
 * (restarted, flushed), a value held within its promise is written back with `add`, so a peer's newer
 * write is never overwritten and the next new instance is served from the cache instead of fetching.
 */

import type { CacheOutagePolicy } from '../config.ts';
import type { CallContext, Served, TokenRecord } from '../domain.ts';
import type { ServiceError } from '../errors.ts';
import type { Clock, KeyValueStore, SecretSource, Telemetry } from '../ports.ts';
import { requireApp } from '../secrets/credentials.ts';
import type { Target } from './fetchers.ts';
import type { MemoryCopies, MemoryEntry } from './memory-copy.ts';
import { encodeRecord, type Fetched, recordTtlSeconds } from './record.ts';
import type { ReportedTokens } from './reported.ts';

export type WriteBackOutcome = 'written' | 'exists' | 'unfit' | 'failed';

export interface OutageDeps {
  store: KeyValueStore;
  clock: Pick<Clock, 'now'>;
  telemetry: Telemetry;
  secrets: SecretSource;
  memory: MemoryCopies;
  reported: ReportedTokens;
  policy: CacheOutagePolicy;
  /** Builds the record of a value fetched during the outage (there is no previous one). */
  buildRecord(target: Target, fetched: Fetched): TokenRecord;
}

export class Outage {
  readonly #deps: OutageDeps;
  /** Outage fetches in flight, shared by concurrent requests of this instance. */
  readonly #fetches = new Map<string, Promise<TokenRecord>>();
  /** Records this instance saw the cache fail for: it puts its value back once the cache answers. */
  readonly #writeBackPending = new Set<string>();

  constructor(deps: OutageDeps) {
    this.#deps = deps;
  }

  /** Whether this instance owes the cache a write-back of `recordKey`. */
  owesWriteBack(recordKey: string): boolean {
    return this.#writeBackPending.has(recordKey);
  }

  /** Puts a held value back into an empty cache (see the header). */
  async writeBack(target: Target, entry: MemoryEntry, now: number): Promise<WriteBackOutcome> {
    const { record } = entry;
    const key = target.keys.record;
    if (
      now >= record.refreshAtMs ||
      this.#deps.memory.guaranteedUntilMs(entry) <= now ||
      (await this.#deps.reported.reportedDead(target, record.value))
    ) {
      this.#writeBackPending.delete(key);
      return 'unfit';
    }
    let added: boolean;
    try {
      added = await this.#deps.store.add(key, encodeRecord(record), recordTtlSeconds(record, now));
    } catch {
      return 'failed';
    }
    this.#writeBackPending.delete(key);
    if (!added) return 'exists';
    this.#deps.telemetry.emit({ event: 'record.written_back', kind: target.kind, appid: target.appid });
    return 'written';
  }

  /** Serves `target` without the cache. `avoid`: a value a consumer reported as rejected by WeChat — never the answer. */
  async serve(target: Target, ctx: CallContext, cause: ServiceError, avoid?: string): Promise<Served> {
    const { clock, telemetry, memory } = this.#deps;
    const key = target.keys.record;
    this.#writeBackPending.add(key);
    telemetry.emit({ event: 'cache.outage', kind: target.kind, appid: target.appid, detail: cause.message });
    const held = memory.get(key);
    const now = clock.now();
    if (
      held &&
      held.record.value !== avoid &&
      !this.#deps.reported.knownDead(held.record.value) &&
      now < held.record.expiresAtMs
    ) {
      telemetry.emit({
        event: 'token.stale_served',
        kind: target.kind,
        appid: target.appid,
        code: 'cache_unavailable',
      });
      return memory.serve(held, now, 'stale');
    }
    const app = await requireApp(this.#deps.secrets, target.appid);
    if (target.kind === 'access_token' && app.tokenApi === 'classic' && this.#deps.policy === 'fail')
      throw cause;
    let inFlight = this.#fetches.get(key);
    if (!inFlight) {
      inFlight = (async () => {
        const fetched = await target.fetch({
          deadlineAtMs: ctx.deadlineAtMs,
          reason: 'outage',
          current: null,
          force: false,
        });
        const record = this.#deps.buildRecord(target, fetched);
        memory.replace(record, clock.now());
        return record;
      })().finally(() => this.#fetches.delete(key));
      this.#fetches.set(key, inFlight);
    }
    const record = await inFlight;
    // A stable token handed back while it lives may be the one reported: without the cache there is no
    // refresh that could replace it safely, so the reporter gets the outage, never that token.
    if (record.value === avoid) throw cause;
    return memory.serveRecord(record, clock.now(), 'wechat');
  }
}
