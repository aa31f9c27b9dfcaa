/**
 * Tokens a consumer reported as rejected by WeChat, once a refresh replaced them: dead for good. No
 * instance serves, writes back or returns such a token again — this one knows at once, the others
 * through the cache (a key per token, by hash, for the token's remaining life). An instance serving
 * its memory copy learns of another instance's report when it next reads the cache (within
 * MEMORY_CACHE_SECONDS): there is no channel between instances that costs nothing per hit.
 */
import { createHash } from 'node:crypto';
import type { TokenKind } from '../domain.ts';
import type { Clock, KeyValueStore } from '../ports.ts';
import { RECORD_FORMAT } from './record.ts';

export class ReportedTokens {
  readonly #store: KeyValueStore;
  readonly #clock: Pick<Clock, 'now'>;
  readonly #prefix: string;
  /** Dead values (by hash) this instance knows of, and until when they matter. */
  readonly #local = new Map<string, number>();

  constructor(deps: { store: KeyValueStore; clock: Pick<Clock, 'now'>; cacheKeyPrefix: string }) {
    this.#store = deps.store;
    this.#clock = deps.clock;
    this.#prefix = deps.cacheKeyPrefix;
  }

  /** Remembers `value` as dead until `untilMs` (its natural expiry): here at once, in the cache for the others. */
  async markDead(target: { kind: TokenKind; appid: string }, value: string, untilMs: number): Promise<void> {
    const now = this.#clock.now();
    if (untilMs <= now) return;
    const hash = hashOf(value);
    this.#local.set(hash, untilMs);
    const ttlSeconds = Math.min(7201, Math.ceil((untilMs - now) / 1000));
    await this.#store.set(this.#key(target, hash), '1', ttlSeconds).catch(() => {});
  }

  /** Whether this instance knows `value` is dead. No I/O: for the hit path. */
  knownDead(value: string): boolean {
    if (this.#local.size === 0) return false;
    const hash = hashOf(value);
    const until = this.#local.get(hash);
    if (until === undefined) return false;
    if (this.#clock.now() < until) return true;
    this.#local.delete(hash);
    return false;
  }

  /** Whether any instance reported `value` dead (asks the cache; a cache failure counts as dead). */
  async reportedDead(target: { kind: TokenKind; appid: string }, value: string): Promise<boolean> {
    if (this.knownDead(value)) return true;
    try {
      return (await this.#store.get(this.#key(target, hashOf(value)))) !== null;
    } catch {
      return true;
    }
  }

  #key(target: { kind: TokenKind; appid: string }, hash: string): string {
    return `${this.#prefix}:${RECORD_FORMAT}:dead:${target.kind}:${target.appid}:${hash}`;
  }
}

function hashOf(value: string): string {
  return createHash('sha256').update(value).digest('hex').slice(0, 32);
}
