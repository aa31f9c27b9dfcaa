/**
 * The refresh lock: one Memcached key per (kind, appid), taken with `add` (atomic: exactly one
 * winner), holding a random owner value, with a lease in whole seconds.
 *
 * Exclusivity rests on the owner value, on time, and on Memcached's compare-and-delete:
 *
 *   t0        A: add(lock, ownerA, lease)            → stored; A holds until t0 + lease
 *   t0+ε      B: add(lock, ownerB, lease)            → exists; B waits for A's write
 *   t0+f      A: fetch from WeChat (bounded by the lease minus a margin, see `fetchDeadlineMs`)
 *   t0+f+w    A: still held? (owner matches and t < t0 + lease − margin) → write record, generation+1
 *   t0+f+w+δ  A: release: gets(lock) = (ownerA, cas) → deleteIfUnchanged(lock, cas)
 *
 * A holder that crashed leaves the key to expire after its lease; waiters then take over. A holder
 * never writes after `t0 + lease − margin`, so it cannot overwrite a newer token written by a
 * successor. Its release cannot delete a successor's lock either, however long the holder was frozen
 * between reading the owner and deleting: a successor's `add` gives the key a new CAS version, and
 * the delete names the version the holder read.
 *
 * Lost replies: memjs is set to one attempt per call, and an `add` that failed or answered "exists"
 * is confirmed by reading the owner value back — an add that was stored but whose reply was lost
 * still counts as won.
 */
import { randomUUID } from 'node:crypto';
import { ServiceError } from '../errors.ts';
import type { Clock, KeyValueStore } from '../ports.ts';

/** A holder stops writing this long before its lease ends (Memcached expiry is per second). */
const LEASE_MARGIN_MS = 1500;

export interface LockHandle {
  key: string;
  owner: string;
  acquiredAtMs: number;
  /** After this, the holder must not write or delete. */
  usableUntilMs: number;
}

export class RefreshLock {
  readonly #store: KeyValueStore;
  readonly #clock: Pick<Clock, 'now'>;
  readonly #leaseSeconds: number;

  constructor(store: KeyValueStore, clock: Pick<Clock, 'now'>, leaseSeconds: number) {
    this.#store = store;
    this.#clock = clock;
    this.#leaseSeconds = leaseSeconds;
  }

  /** The handle when this caller won, null when someone else holds the lock. Throws `cache_unavailable`. */
  async acquire(key: string): Promise<LockHandle | null> {
    const owner = randomUUID();
    const acquiredAtMs = this.#clock.now();
    let stored = false;
    let addError: unknown;
    try {
      stored = await this.#store.add(key, owner, this.#leaseSeconds);
    } catch (err) {
      addError = err;
    }
    if (!stored) {
      // "exists" or a lost reply: the add may have been stored for us all the same.
      let holder: string | null;
      try {
        holder = await this.#store.get(key);
      } catch (err) {
        throw addError ?? err;
      }
      if (holder !== owner) {
        if (addError !== undefined && holder === null) throw addError;
        return null;
      }
    }
    return {
      key,
      owner,
      acquiredAtMs,
      usableUntilMs: acquiredAtMs + this.#leaseSeconds * 1000 - LEASE_MARGIN_MS,
    };
  }

  /** Latest moment an upstream call made under this lock may end. */
  fetchDeadlineMs(handle: LockHandle): number {
    return handle.usableUntilMs - 500;
  }

  /** Whether the holder may still write: inside its lease and still the owner. */
  async stillHeld(handle: LockHandle): Promise<boolean> {
    if (this.#clock.now() >= handle.usableUntilMs) return false;
    return (await this.#store.get(handle.key)) === handle.owner;
  }

  /** Atomic compare-and-delete of our own lock. Never throws: an unreleased lock expires by itself. */
  async release(handle: LockHandle): Promise<void> {
    try {
      const held = await this.#store.gets(handle.key);
      if (held?.value !== handle.owner) return;
      await this.#store.deleteIfUnchanged(handle.key, held.cas);
    } catch {
      // The lease ends the lock.
    }
  }

  /** Whether anyone holds the lock now (a waiter uses this to notice a lapsed lease). */
  async isHeld(key: string): Promise<boolean> {
    return (await this.#store.get(key)) !== null;
  }
}

export function isCacheDown(err: unknown): boolean {
  return err instanceof ServiceError && err.code === 'cache_unavailable';
}
