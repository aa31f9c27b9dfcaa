/**
 * The call guard decides when a Memcached call has failed and when Memcached is down (slow is not
 * down). Fake timers drive the guard's timer; a fake monotonic clock says how late it fired, which is
 * how a stalled or frozen process looks from inside.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { AttemptTimeout, BackendAnswer, CallGuard } from '../../../lib/store/call-guard.ts';
import { deferred } from '../../fakes/service-fakes.ts';
import { failure } from '../../support/failure.ts';

const TIMEOUT_MS = 250;

let wallMs: number;
let monotonicMs: number;

beforeEach(() => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setImmediate'] });
  wallMs = Date.UTC(2025, 0, 15, 4, 0, 0);
  monotonicMs = 1000;
});
afterEach(() => {
  vi.useRealTimers();
});

function guard(failFastMs = 1000) {
  return new CallGuard({
    timeoutMs: TIMEOUT_MS,
    failFastMs,
    now: () => wallMs,
    monotonic: () => monotonicMs,
  });
}

/** Lets `ms` pass on both clocks, firing due timers on time. */
async function elapse(ms: number): Promise<void> {
  monotonicMs += ms;
  wallMs += ms;
  await vi.advanceTimersByTimeAsync(ms);
  // The guard's extra loop turn before it rejects (a fake setImmediate needs the clock to move).
  await vi.advanceTimersByTimeAsync(1);
}

describe('CallGuard', () => {
  it('answers with the value when the attempt answers in time, without a reset', async () => {
    const reset = vi.fn();
    await expect(guard().run('get', async () => 'v', reset)).resolves.toBe('v');
    expect(reset).not.toHaveBeenCalled();
  });

  it('forgives a stall of the process: a timer that fires 800 ms late does not fail the call', async () => {
    const answer = deferred<string>();
    const reset = vi.fn();
    const call = guard().run('get', () => answer.promise, reset);
    // The process did not run for 800 ms: the monotonic clock jumps, and the timer fires late.
    monotonicMs += 800;
    await vi.advanceTimersByTimeAsync(TIMEOUT_MS);
    // The answer that was waiting in the socket is read after the stall.
    answer.resolve('v');
    await expect(call).resolves.toBe('v');
    expect(reset).not.toHaveBeenCalled();
  });

  it('retries once on a fresh connection after one attempt without an answer, and opens no window', async () => {
    const attempts = [deferred<string>(), deferred<string>()];
    let n = 0;
    const reset = vi.fn();
    const g = guard();
    const call = g.run('get', () => attempts[n++]!.promise, reset);
    await elapse(TIMEOUT_MS);
    expect(reset).toHaveBeenCalledTimes(1);
    expect(n).toBe(2);
    // The retry answers after 800 ms: slow is not down.
    await elapse(800);
    attempts[1]!.resolve('second');
    await expect(call).resolves.toBe('second');
    // No window: the next call goes to Memcached.
    await expect(g.run('get', async () => 'next', reset)).resolves.toBe('next');
  });

  it('fails with cache_unavailable after two attempts without an answer, then fails fast for the window', async () => {
    const g = guard(1000);
    const attempt = vi.fn(() => new Promise<string>(() => {}));
    const reset = vi.fn();
    const call = failure(g.run('add', attempt, reset));
    await elapse(TIMEOUT_MS);
    // The retry on a fresh connection has four times the time (at least 1 s): a busy machine slows
    // Memcached's answers too.
    await elapse(999);
    expect(attempt).toHaveBeenCalledTimes(2);
    expect(reset).toHaveBeenCalledTimes(1);
    await elapse(1);
    const err = await call;
    expect(err.code).toBe('cache_unavailable');
    expect(err.message).toMatch(
      /add failed twice, the second time on a fresh connection: no answer within 250 ms/,
    );
    expect(attempt).toHaveBeenCalledTimes(2);
    expect(reset).toHaveBeenCalledTimes(2);

    const fast = await failure(g.run('get', attempt, reset));
    expect(fast.code).toBe('cache_unavailable');
    expect(fast.message).toMatch(/skipped/);
    expect(attempt).toHaveBeenCalledTimes(2);

    // After the window one call probes with a single short attempt: still down, the window opens again.
    await elapse(1000);
    const probe = failure(g.run('get', attempt, reset));
    await elapse(TIMEOUT_MS);
    expect((await probe).message).toMatch(/still unreachable/);
    expect(attempt).toHaveBeenCalledTimes(3);
    expect((await failure(g.run('get', attempt, reset))).message).toMatch(/skipped/);

    // The next probe finds Memcached back, and calls go to it again.
    await elapse(1000);
    await expect(g.run('get', async () => 'back', reset)).resolves.toBe('back');
    await expect(g.run('get', async () => 'again', reset)).resolves.toBe('again');
  });

  it('treats a refused connection like a timeout: one retry, then unreachable', async () => {
    const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' });
    const attempt = vi.fn(async () => {
      throw refused;
    });
    const err = await failure(guard().run('get', attempt, () => {}));
    expect(err.code).toBe('cache_unavailable');
    expect(err.message).toContain('ECONNREFUSED');
    expect(err.cause).toBe(refused);
    expect(attempt).toHaveBeenCalledTimes(2);
  });

  it('does not retry or open the window for an answer Memcached gave', async () => {
    const g = guard();
    const attempt = vi.fn(async () => {
      throw new BackendAnswer('increment returned no value');
    });
    const reset = vi.fn();
    const err = await failure(g.run('increment', attempt, reset));
    expect(err.code).toBe('cache_unavailable');
    expect(err.message).toBe('Memcached increment: increment returned no value');
    expect(attempt).toHaveBeenCalledTimes(1);
    expect(reset).not.toHaveBeenCalled();
    await expect(g.run('get', async () => 'v', reset)).resolves.toBe('v');
  });

  it('forgives only a few stalls: an attempt stalled again and again still ends', async () => {
    const reset = vi.fn();
    const call = failure(guard().run('get', () => new Promise<string>(() => {}), reset));
    for (let i = 0; i < 12; i++) {
      monotonicMs += 5000;
      await vi.advanceTimersByTimeAsync(1000);
    }
    const err = await call;
    expect(err.code).toBe('cache_unavailable');
    expect(err.cause).toBeInstanceOf(AttemptTimeout);
  });

  it('ends every call by the invocation deadline it is bound to: a shorter attempt, no retry past it', async () => {
    const g = guard();
    g.bound(wallMs + 300);
    const attempt = vi.fn(() => new Promise<string>(() => {}));
    const call = failure(g.run('get', attempt, () => {}));
    // The first attempt has its 250 ms; the retry only what is left before the deadline (less 20 ms).
    await elapse(TIMEOUT_MS);
    expect(attempt).toHaveBeenCalledTimes(2);
    await elapse(30);
    const err = await call;
    expect(err.code).toBe('cache_unavailable');
    expect(wallMs).toBeLessThanOrEqual(Date.UTC(2025, 0, 15, 4, 0, 0) + 300);

    // With no time left, no attempt is made at all — and that is not Memcached's fault: no reset, and
    // the next invocation's calls are not failed fast.
    g.bound(wallMs + 10);
    const reset = vi.fn();
    expect((await failure(g.run('get', attempt, reset))).message).toMatch(/no time left/);
    expect((await failure(g.run('get', attempt, reset))).message).toMatch(/no time left/);
    expect(attempt).toHaveBeenCalledTimes(2);
    expect(reset).not.toHaveBeenCalled();
    g.bound(wallMs + 10_000);
    await expect(g.run('get', async () => 'next invocation', reset)).resolves.toBe('next invocation');
  });

  it('lets an answer already waiting win over a timer that fires at the same moment', async () => {
    const answer = deferred<string>();
    const call = guard().run(
      'get',
      () => answer.promise,
      () => {},
    );
    // The timer fires on time; the answer arrives in the same loop turn, before the guard's extra turn.
    vi.advanceTimersByTime(TIMEOUT_MS);
    answer.resolve('just in time');
    await vi.advanceTimersByTimeAsync(1);
    await expect(call).resolves.toBe('just in time');
  });
});
