/**
 * Time for the client: the wall clock, chance (backoff jitter), and timers that can be cancelled.
 * Every wait of the client (a backoff, a deadline) is one of these timers, always cancelled once it
 * is no longer needed, so that a finished call never keeps a process alive. Tests inject a clock
 * they move by hand.
 */

/** The client's view of time. */
export interface ClientClock {
  /** Epoch milliseconds. */
  now(): number;
  /** A number in [0, 1): backoff jitter. */
  random(): number;
  /** Calls `fn` once after `ms` milliseconds; the returned function cancels it. */
  schedule(fn: () => void, ms: number): () => void;
}

/** Wall time, Math.random and setTimeout. */
export const systemClientClock: ClientClock = {
  now: () => Date.now(),
  random: () => Math.random(),
  schedule(fn, ms) {
    const timer = setTimeout(fn, Math.max(0, ms));
    return () => clearTimeout(timer);
  },
};

/**
 * An absolute deadline (epoch ms) with the signal that aborts at it. Several callers waiting on one
 * shared call can {@link Deadline.extend} it: the call then runs until the latest of their deadlines,
 * while each caller still stops waiting at its own.
 */
export class Deadline {
  readonly signal: AbortSignal;
  private readonly controller = new AbortController();
  private cancelTimer: () => void = () => {};
  private done = false;

  constructor(
    private readonly clock: ClientClock,
    private atMs: number,
  ) {
    this.signal = this.controller.signal;
    this.arm();
  }

  get deadlineAtMs(): number {
    return this.atMs;
  }

  /** Milliseconds left, never negative. */
  remainingMs(): number {
    return Math.max(0, this.atMs - this.clock.now());
  }

  get expired(): boolean {
    return this.signal.aborted || this.clock.now() >= this.atMs;
  }

  /** Moves the deadline later (never earlier). */
  extend(atMs: number): void {
    if (this.done || atMs <= this.atMs) return;
    this.atMs = atMs;
    this.cancelTimer();
    this.arm();
  }

  /** Stops the timer: call once the work the deadline bounds is over. */
  release(): void {
    this.done = true;
    this.cancelTimer();
  }

  private arm(): void {
    this.cancelTimer = this.clock.schedule(() => {
      this.done = true;
      this.controller.abort();
    }, this.atMs - this.clock.now());
  }
}

/** Resolves after `ms`, or at once when `signal` aborts (the caller then checks its deadline). */
export function sleep(clock: ClientClock, ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const onAbort = () => {
      cancel();
      resolve();
    };
    const cancel = clock.schedule(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * `promise`, or a rejection with `onTimeout()` once `atMs` passes — whichever comes first; when
 * `onTimeout` answers undefined, the wait goes on until the promise settles by itself. The timer is
 * cancelled as soon as the promise settles.
 */
export function within<T>(
  clock: ClientClock,
  promise: Promise<T>,
  atMs: number,
  onTimeout: () => Error | undefined,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const cancel = clock.schedule(() => {
      const error = onTimeout();
      if (error !== undefined) reject(error);
    }, atMs - clock.now());
    promise.then(
      (value) => {
        cancel();
        resolve(value);
      },
      (err: unknown) => {
        cancel();
        reject(err);
      },
    );
  });
}
