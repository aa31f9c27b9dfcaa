/** runBounded: at most N at once, each item within its share of the time left, never a throw. */
import { describe, expect, it } from 'vitest';
import { runBounded } from '../../lib/bounded.ts';
import { deferred, flush } from '../fakes/service-fakes.ts';

describe('runBounded', () => {
  it('runs at most `concurrency` items at once, in order, and returns outcomes in the items’ order', async () => {
    let running = 0;
    let peak = 0;
    const started: number[] = [];
    const outcomes = await runBounded(
      [1, 2, 3, 4, 5, 6, 7],
      { concurrency: 3, deadlineAtMs: 10_000, shareFloorMs: 0, minStartMs: 0, now: () => 0 },
      async (n) => {
        started.push(n);
        running++;
        peak = Math.max(peak, running);
        await flush();
        running--;
        if (n === 4) throw new Error('four fails');
        return n * 10;
      },
    );
    expect(peak).toBe(3);
    expect(started).toEqual([1, 2, 3, 4, 5, 6, 7]);
    expect(outcomes.map((o) => (o.outcome === 'done' ? o.value : o.outcome))).toEqual([
      10,
      20,
      30,
      'failed',
      50,
      60,
      70,
    ]);
  });

  it('gives each item its share of the time left: the time left over the rounds still to go', async () => {
    const deadlines: number[] = [];
    await runBounded(
      Array.from({ length: 8 }, (_, i) => i),
      { concurrency: 2, deadlineAtMs: 8000, shareFloorMs: 0, minStartMs: 0, now: () => 0 },
      async (_n, deadlineAtMs) => {
        deadlines.push(deadlineAtMs);
      },
    );
    // 8 items, 2 at once: 4 rounds of the 8 s (2 s each) while 7 or 8 are left, 3 rounds while 5 or 6
    // are, … and the whole time once the rest fits in one round.
    expect(deadlines).toEqual([2000, 2000, 2666, 2666, 4000, 4000, 8000, 8000]);
  });

  it('a slow item ends by its share and the others run meanwhile; what has too little time left is skipped', async () => {
    let t = 0;
    const slow = deferred<string>();
    const order: string[] = [];
    const run = runBounded(
      ['slow', 'a', 'b', 'c'],
      { concurrency: 2, deadlineAtMs: 1000, shareFloorMs: 0, minStartMs: 100, now: () => t },
      async (name, deadlineAtMs) => {
        order.push(`${name}@${t} until ${deadlineAtMs}`);
        if (name === 'slow') return slow.promise;
        t += 100;
        return name;
      },
    );
    await flush();
    // The slow item got half the time (4 items, 2 at once: 2 rounds); a, b and c ran meanwhile.
    t = 950;
    slow.reject(new Error('cut at its deadline'));
    const outcomes = await run;
    expect(order).toEqual(['slow@0 until 500', 'a@0 until 500', 'b@100 until 1000', 'c@200 until 1000']);
    expect(outcomes.map((o) => o.outcome)).toEqual(['failed', 'done', 'done', 'done']);

    t = 950;
    const late = await runBounded(
      ['x', 'y'],
      { concurrency: 1, deadlineAtMs: 1000, shareFloorMs: 0, minStartMs: 100, now: () => t },
      async (n) => n,
    );
    expect(late.map((o) => o.outcome)).toEqual(['skipped', 'skipped']);
  });

  it('gives an item at least the floor while that much time is left', async () => {
    const deadlines: number[] = [];
    await runBounded(
      Array.from({ length: 10 }, (_, i) => i),
      { concurrency: 1, deadlineAtMs: 5000, shareFloorMs: 3000, minStartMs: 0, now: () => 0 },
      async (_n, deadlineAtMs) => {
        deadlines.push(deadlineAtMs);
      },
    );
    // A fair share would be 500 ms at first; the floor gives 3 s, and the last item the whole time.
    expect(deadlines).toEqual([...Array.from({ length: 9 }, () => 3000), 5000]);
  });
});
