/**
 * Fakes for the consumer client: a clock whose timers run only when the test moves it, and a
 * transport whose answers the test writes. Nothing waits for real time.
 */
import type { ClientClock } from '../../../lib/client/clock.ts';
import { TokenClientError } from '../../../lib/client/errors.ts';
import type { ServiceRequest } from '../../../lib/client/protocol.ts';
import type { TokenTransport, TransportCall } from '../../../lib/client/transport.ts';
import { flush, track } from '../../fakes/service-fakes.ts';

export const APPID = 'wx0123456789abcdef';
export const START_MS = Date.UTC(2025, 0, 15, 4, 0, 0);

interface Timer {
  atMs: number;
  seq: number;
  fn: () => void;
}

/** `now()` is `t`; scheduled callbacks run when {@link FakeClientClock.advance} passes their time. */
export class FakeClientClock implements ClientClock {
  t = START_MS;
  /** What random() answers: backoff delays land at ¾ of their ceiling with 0.5. */
  rand = 0.5;
  #timers: Timer[] = [];
  #seq = 0;

  now(): number {
    return this.t;
  }

  random(): number {
    return this.rand;
  }

  schedule(fn: () => void, ms: number): () => void {
    const timer = { atMs: this.t + Math.max(0, ms), seq: this.#seq++, fn };
    this.#timers.push(timer);
    return () => {
      this.#timers = this.#timers.filter((t) => t !== timer);
    };
  }

  /** Timers armed and not yet run or cancelled. */
  get pending(): number {
    return this.#timers.length;
  }

  /** Moves time forward by `ms`, running every timer due on the way (with microtasks between). */
  async advance(ms: number): Promise<void> {
    const target = this.t + ms;
    for (;;) {
      await flush();
      const next = this.#next();
      if (next === undefined || next.atMs > target) break;
      this.#run(next);
    }
    this.t = target;
    await flush();
  }

  /** Runs timers in order until `promise` settles; its outcome, as a promise. */
  async settle<T>(promise: Promise<T>): Promise<T> {
    const tracked = track(promise);
    for (let turn = 0; turn < 10_000; turn++) {
      await flush();
      if (tracked.settled()) return promise;
      const next = this.#next();
      if (next === undefined) throw new Error('the promise waits on nothing the fake clock can run');
      this.#run(next);
    }
    throw new Error('the promise did not settle within 10 000 timers');
  }

  #next(): Timer | undefined {
    return [...this.#timers].sort((a, b) => a.atMs - b.atMs || a.seq - b.seq)[0];
  }

  #run(timer: Timer): void {
    this.#timers = this.#timers.filter((t) => t !== timer);
    this.t = Math.max(this.t, timer.atMs);
    timer.fn();
  }
}

/** A token body as the service writes it (`expires_at` = whole seconds of now + expires_in). */
export function tokenBody(clock: { now(): number }, token: string, expiresIn: number) {
  return {
    access_token: token,
    expires_in: expiresIn,
    expires_at: Math.floor(clock.now() / 1000) + expiresIn,
  };
}

/** An error body as the service writes it. */
export function errorBody(code: string, retryable: boolean, errcode?: number) {
  return {
    error: {
      code,
      message: `${code} for the test`,
      retryable,
      ...(errcode !== undefined ? { errcode } : {}),
    },
  };
}

type Handler = (request: ServiceRequest, call: TransportCall) => unknown;

/** Records every request; answers with `handler` (a value, a promise, or a throw). */
export class FakeTransport implements TokenTransport {
  readonly requests: ServiceRequest[] = [];
  readonly calls: TransportCall[] = [];

  constructor(public handler: Handler = () => Promise.reject(new Error('no answer set'))) {}

  send(request: ServiceRequest, call: TransportCall): Promise<unknown> {
    this.requests.push(request);
    this.calls.push(call);
    return Promise.resolve().then(() => this.handler(request, call));
  }

  /** Requests of one action. */
  count(action: ServiceRequest['action']): number {
    return this.requests.filter((r) => r.action === action).length;
  }
}

/** An answer that never comes: rejects as a real transport does when the call's signal aborts. */
export function hang(call: TransportCall): Promise<never> {
  return new Promise((_resolve, reject) => {
    call.signal.addEventListener('abort', () =>
      reject(
        new TokenClientError('deadline_exceeded', 'the fake service did not answer before the deadline'),
      ),
    );
  });
}

/** The TokenClientError a promise rejects with (fails the test if it resolves or rejects otherwise). */
export async function clientFailure(promise: Promise<unknown>): Promise<TokenClientError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(err instanceof TokenClientError)) {
    throw new Error(`expected a TokenClientError, got ${err instanceof Error ? err.name : String(err)}`);
  }
  return err;
}
