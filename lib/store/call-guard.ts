/**
 * When a Memcached call has failed, and when Memcached is down: the policy every adapter applies.
 *
 * Slow is not down. A Lambda instance is frozen between invocations and gets a fraction of a CPU at
 * small memory sizes, so a reply can arrive while the process is not running: on a thaw, the timer
 * guarding the call fires first (timers run before I/O in a loop turn) although the answer already
 * sits in the socket. The guard therefore
 *
 *   1. measures its own lateness: a timer that fires far later than it was set for means this
 *      process stalled — the time is not Memcached's, so the call gets its time again (a few times);
 *   2. before it rejects, gives pending I/O one more loop turn (setImmediate runs after the poll
 *      phase), so an answer that is already there wins;
 *   3. retries a call that timed out or lost its connection once, on a fresh connection, with four
 *      times the time (at least a second): a busy machine slows Memcached's answers too, and slow is
 *      not down;
 *   4. declares Memcached unreachable only when that second attempt fails too, and only then makes
 *      further calls fail at once for a short window — so an outage costs one caller two timeouts,
 *      not every caller. After the window one call probes with a single short attempt: it either
 *      finds Memcached back or opens the window again.
 *
 * One slow reply, a stall of the process, or a failed background call (a counter) never opens the
 * window; answers Memcached gave (an error status) never count as unreachability.
 */
import { ServiceError } from '../errors.ts';

export interface CallGuardOptions {
  /** How long one attempt may take while this process runs, connecting included. */
  timeoutMs: number;
  /** After Memcached was found unreachable, calls fail at once for this long (default 1000 ms). */
  failFastMs?: number;
  /** Wall clock of the fail-fast window (epoch ms). */
  now?: () => number;
  /** Monotonic clock that measures the guard's own lateness (ms). */
  monotonic?: () => number;
}

/** Below this much time before the deadline, a call is not started. */
const DEADLINE_RESERVE_MS = 20;

/** The retry on a fresh connection may take this many times the first attempt's time, at least 1 s. */
const RETRY_TIME_FACTOR = 4;
const RETRY_MIN_MS = 1000;
/** A timer later than this (beyond its delay) means the process itself did not run. */
const STALL_TOLERANCE_MS = 100;
/** How many stalls one attempt forgives before its timeout counts. */
const MAX_STALLS_FORGIVEN = 4;

/** An attempt that got no answer in its time. */
export class AttemptTimeout extends Error {
  override readonly name = 'AttemptTimeout';
}

/**
 * The connection an attempt used was dropped by the reset after another call's timeout. That says
 * nothing about this call: it is tried again on the fresh connection without counting as a failure.
 */
export class DroppedByReset extends Error {
  override readonly name = 'DroppedByReset';
}

/** How many times one call may be cut short by other calls' resets before it counts as a failure. */
const MAX_DROPS = 3;

/** What the backend said: a failure that proves it is reachable (never retried, never a window). */
export class BackendAnswer extends Error {
  override readonly name = 'BackendAnswer';
}

export class CallGuard {
  readonly #timeoutMs: number;
  readonly #failFastMs: number;
  readonly #now: () => number;
  readonly #monotonic: () => number;
  /** Memcached was found unreachable and has not answered since. */
  #down = false;
  #downUntilMs = 0;
  /** The invocation's deadline (epoch ms): no attempt runs past it. */
  #deadlineAtMs = Number.POSITIVE_INFINITY;

  constructor(options: CallGuardOptions) {
    this.#timeoutMs = options.timeoutMs;
    this.#failFastMs = options.failFastMs ?? 1000;
    this.#now = options.now ?? Date.now;
    this.#monotonic = options.monotonic ?? (() => performance.now());
  }

  /** Calls from now on end by `deadlineAtMs` (wall clock, epoch ms). */
  bound(deadlineAtMs: number): void {
    this.#deadlineAtMs = deadlineAtMs;
  }

  /**
   * Runs `attempt` under the policy above. `reset` drops the connection the attempt used, so the retry
   * opens a fresh one. Throws `cache_unavailable` naming the operation and the cause.
   */
  async run<T>(operation: string, attempt: () => Promise<T>, reset: () => void): Promise<T> {
    if (this.#now() < this.#downUntilMs) {
      throw new ServiceError(
        'cache_unavailable',
        `Memcached ${operation} skipped: Memcached was unreachable less than ${this.#failFastMs} ms ago`,
      );
    }
    const attempts = this.#down ? 1 : 2;
    let first: unknown;
    let drops = 0;
    /** The last attempt was shortened by the deadline: its timeout proves nothing about Memcached. */
    let cut = false;
    for (let n = 1; n <= attempts; n++) {
      // No time left is the invocation's end, not Memcached's: no attempt, no reset, no window.
      const leftMs = this.#deadlineAtMs - this.#now() - DEADLINE_RESERVE_MS;
      if (leftMs <= 0) {
        throw new ServiceError(
          'cache_unavailable',
          `Memcached ${operation} not attempted: the invocation has no time left${first === undefined ? '' : ` (${describe(first)})`}`,
          first === undefined ? {} : { cause: first },
        );
      }
      try {
        const intendedMs =
          n === 1 ? this.#timeoutMs : Math.max(RETRY_MIN_MS, RETRY_TIME_FACTOR * this.#timeoutMs);
        cut = leftMs < intendedMs;
        const value = await this.#bounded(attempt, Math.min(leftMs, intendedMs));
        this.#down = false;
        return value;
      } catch (err) {
        if (err instanceof DroppedByReset && drops < MAX_DROPS) {
          drops++;
          n--;
          continue;
        }
        if (err instanceof BackendAnswer) {
          this.#down = false;
          throw new ServiceError('cache_unavailable', `Memcached ${operation}: ${err.message}`, {
            cause: err,
          });
        }
        reset();
        first ??= err;
      }
    }
    if (cut) {
      throw new ServiceError(
        'cache_unavailable',
        `Memcached ${operation} got no answer before the invocation's deadline: ${describe(first)}`,
        { cause: first },
      );
    }
    const probe = this.#down;
    this.#down = true;
    this.#downUntilMs = this.#now() + this.#failFastMs;
    throw new ServiceError(
      'cache_unavailable',
      probe
        ? `Memcached ${operation} failed: Memcached is still unreachable (${describe(first)})`
        : `Memcached ${operation} failed twice, the second time on a fresh connection: ${describe(first)}`,
      { cause: first },
    );
  }

  /** One attempt, rejected with AttemptTimeout after its time (stalls forgiven, see the header). */
  #bounded<T>(attempt: () => Promise<T>, timeoutMs: number): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      let done = false;
      let timer: NodeJS.Timeout | undefined;
      let forgiven = 0;
      const arm = () => {
        const armedAt = this.#monotonic();
        timer = setTimeout(() => {
          const lateMs = this.#monotonic() - armedAt - timeoutMs;
          if (lateMs > STALL_TOLERANCE_MS && forgiven < MAX_STALLS_FORGIVEN) {
            forgiven++;
            arm();
            return;
          }
          setImmediate(() => {
            if (done) return;
            done = true;
            reject(new AttemptTimeout(`no answer within ${timeoutMs} ms`));
          });
        }, timeoutMs);
      };
      arm();
      attempt().then(
        (value) => {
          if (done) return;
          done = true;
          clearTimeout(timer);
          resolve(value);
        },
        (err: unknown) => {
          if (done) return;
          done = true;
          clearTimeout(timer);
          reject(err);
        },
      );
    });
  }
}

function describe(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  return text.slice(0, 200);
}

// ---- the single bound of a call, for the text-protocol adapter and Auto Discovery -------------

/** A call that got no answer in time. Adapters turn it into `cache_unavailable`. */
export class CallTimeoutError extends Error {
  override readonly name = 'CallTimeoutError';
  readonly timeoutMs: number;

  constructor(timeoutMs: number, what: string) {
    super(`${what} within ${timeoutMs} ms`);
    this.timeoutMs = timeoutMs;
  }
}

/**
 * Runs `run` and rejects with {@link CallTimeoutError} if it has not settled `timeoutMs` later.
 *
 * When the timer fires, the answer may already sit unread in a socket because the event loop was
 * blocked (a module load, a long synchronous task, a Lambda instance thawed after a freeze): timers
 * run before I/O in a loop turn, so a plain timer would blame a healthy server for our own stall. The
 * timer therefore gives pending I/O one more turn (`setImmediate` runs after the poll phase) before it
 * rejects. `onTimeout` runs right after the call is given up (an adapter may drop a connection there).
 */
export async function withTimeout<T>(
  run: () => Promise<T>,
  timeoutMs: number,
  options: { what?: string; onTimeout?: () => void } = {},
): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  let immediate: NodeJS.Immediate | undefined;
  const guard = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      immediate = setImmediate(() => {
        reject(new CallTimeoutError(timeoutMs, options.what ?? 'no answer'));
        options.onTimeout?.();
      });
    }, timeoutMs);
  });
  try {
    return await Promise.race([run(), guard]);
  } finally {
    clearTimeout(timer);
    if (immediate) clearImmediate(immediate);
  }
}
