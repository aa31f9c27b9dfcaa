/**
 * The per-instance memory copy of each record, and what a served value promises. A copy remembers
 * when this instance last saw its record as the current one: the promise is derived from that moment
 * (lifetime.ts), so a copy can be served without asking the cache while its promise holds.
 */
import type { Served, Source, TokenRecord } from '../domain.ts';
import { guaranteedUntilMs, type LifetimeSettings, secondsUntil } from './lifetime.ts';
import { recordKeys } from './record.ts';

export interface MemoryEntry {
  record: TokenRecord;
  /** When this instance last saw the record as the current one. */
  confirmedAtMs: number;
}

export class MemoryCopies {
  readonly #entries = new Map<string, MemoryEntry>();
  readonly #settings: LifetimeSettings & { cacheKeyPrefix: string };

  constructor(settings: LifetimeSettings & { cacheKeyPrefix: string }) {
    this.#settings = settings;
  }

  get(recordKey: string): MemoryEntry | undefined {
    return this.#entries.get(recordKey);
  }

  /** The moment until which the copy's value is guaranteed valid. */
  guaranteedUntilMs(entry: MemoryEntry): number {
    return guaranteedUntilMs(entry.record, entry.confirmedAtMs, this.#settings);
  }

  /** Holds `record` as seen current at `now`, unless a newer generation of another value is held. */
  confirm(record: TokenRecord, now: number): MemoryEntry {
    const entry = { record, confirmedAtMs: now };
    const key = recordKeys(this.#settings.cacheKeyPrefix, record.kind, record.appid).record;
    const held = this.#entries.get(key);
    if (!held || held.record.generation <= record.generation || held.record.value === record.value)
      this.#entries.set(key, entry);
    return entry;
  }

  /** Holds `record` in place of whatever is held (a value fetched while the cache was down). */
  replace(record: TokenRecord, now: number): void {
    const key = recordKeys(this.#settings.cacheKeyPrefix, record.kind, record.appid).record;
    this.#entries.set(key, { record, confirmedAtMs: now });
  }

  /** Confirms and serves `record`. */
  serveRecord(record: TokenRecord, now: number, source: Source): Served {
    return this.serve(this.confirm(record, now), now, source);
  }

  /** The answer for a held entry: the value and its promise as of `now`. */
  serve(entry: MemoryEntry, now: number, source: Source): Served {
    const expiresIn = secondsUntil(this.guaranteedUntilMs(entry), now);
    return {
      kind: entry.record.kind,
      appid: entry.record.appid,
      value: entry.record.value,
      source,
      expiresIn,
      expiresAt: Math.floor(now / 1000) + expiresIn,
      generation: entry.record.generation,
      fetchedAtMs: entry.record.fetchedAtMs,
    };
  }
}
