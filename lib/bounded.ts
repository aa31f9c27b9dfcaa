/**
 * Bounded, deadline-aware work over many items: the schedule's refreshes and quota checks, and
 * `status` over every app.
 */

/** What became of one item. */
export type BoundedOutcome<T, R> =
  | { item: T; outcome: 'done'; value: R; ms: number }
  | { item: T; outcome: 'failed'; error: unknown; ms: number }
  /** Not started: less than `minStartMs` was left (the next run picks it up). */
  | { item: T; outcome: 'skipped' };

export interface BoundedOptions {
  /** At most this many items at once. */
  concurrency: number;
  /** Nothing runs past this moment (epoch ms). */
  deadlineAtMs: number;
  /**
   * The least time an item is given when that much is left, whatever its fair share: the schedule
   * gives a refresh at least one WeChat attempt (UPSTREAM_TIMEOUT_MS), so a normal answer is never cut.
   */
  shareFloorMs: number;
  /** An item is started only with at least this much time left; later items are skipped. */
  minStartMs: number;
  now(): number;
}

/**
 * Runs `work` over `items` in their order with at most `concurrency` at once. Each item gets its own
 * share of the time left, passed as its deadline: the time left divided by the rounds of
 * `concurrency` items still to go (the whole time left once the rest fits in one round). So a slow
 * or failing item ends by its share and never takes the time of the items behind it, and a fast one
 * leaves its unused time to those. A share is at least `shareFloorMs` while that much time is left;
 * an item with less than `minStartMs` left is not started.
 * Never throws: a failure is that item's outcome. Outcomes come back in the items' order.
 */
export async function runBounded<T, R>(
  items: readonly T[],
  options: BoundedOptions,
  work: (item: T, deadlineAtMs: number) => Promise<R>,
): Promise<BoundedOutcome<T, R>[]> {
  const { concurrency, deadlineAtMs, shareFloorMs, minStartMs, now } = options;
  const outcomes: BoundedOutcome<T, R>[] = new Array(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    for (;;) {
      const index = next++;
      if (index >= items.length) return;
      const item = items[index] as T;
      const startedAtMs = now();
      const left = deadlineAtMs - startedAtMs;
      const rounds = Math.ceil((items.length - index) / concurrency);
      const shareMs = Math.min(left, Math.max(left / rounds, shareFloorMs));
      if (left < minStartMs) {
        outcomes[index] = { item, outcome: 'skipped' };
        continue;
      }
      try {
        const value = await work(item, startedAtMs + Math.floor(shareMs));
        outcomes[index] = { item, outcome: 'done', value, ms: now() - startedAtMs };
      } catch (error) {
        outcomes[index] = { item, outcome: 'failed', error, ms: now() - startedAtMs };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
  return outcomes;
}
