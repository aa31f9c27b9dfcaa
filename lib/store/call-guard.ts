/**
 * The bound every store adapter puts around one call, shared by the text-protocol adapter, the
 * cluster router and Auto Discovery (the memjs adapter keeps its own copy of the same rule).
 */

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
