/**
 * Fakes for the token service's ports: a clock the test moves, a sleep that moves it, a WeChat whose
 * answers the test settles explicitly, a store that can fail on demand, and telemetry as data.
 * No timers: "waiting" is advancing the fake clock; interleaving is done with deferred promises.
 */
import type { ApiQuota, AppConfig, Credentials, Grant, TicketType, TokenApi } from '../../lib/domain.ts';
import { ServiceError } from '../../lib/errors.ts';
import type { Clock, KeyValueStore, SecretSource, Telemetry, WeChatApi } from '../../lib/ports.ts';
import type { CoreEvent } from '../../lib/telemetry/events.ts';

export interface Deferred<T> {
  promise: Promise<T>;
  resolve(value: T): void;
  reject(error: unknown): void;
  settled: boolean;
}

export function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  const d: Deferred<T> = {
    promise,
    settled: false,
    resolve: (value) => {
      d.settled = true;
      resolve(value);
    },
    reject: (error) => {
      d.settled = true;
      reject(error);
    },
  };
  return d;
}

/** One turn of the event loop: every pending microtask (and store call) runs. */
export function flush(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** Lets the event loop turn until `condition` holds (no timers, no wall-clock waiting). */
export async function until(condition: () => boolean, what = 'condition'): Promise<void> {
  for (let turn = 0; turn < 2000; turn++) {
    if (condition()) return;
    await flush();
  }
  throw new Error(`gave up waiting for ${what}`);
}

/** Tracks whether a promise has settled, without swallowing its outcome. */
export function track<T>(promise: Promise<T>): { promise: Promise<T>; settled: () => boolean } {
  let done = false;
  promise.then(
    () => {
      done = true;
    },
    () => {
      done = true;
    },
  );
  return { promise, settled: () => done };
}

/**
 * The fake time: `clock.now()` returns `t`. `sleep(ms)` advances `t` by `ms` (rounded up to a whole
 * millisecond, as a real clock would show it) and resolves at once,
 * unless the sleep is gated: then it parks until the test calls `wake()`.
 */
export class FakeTime {
  t: number;
  /** `random()` is fixed at 0.5: poll and backoff jitter land in the middle of their range. */
  readonly clock: Clock = { now: () => this.t, sleep: (ms) => this.sleep(ms), random: () => 0.5 };
  /** Every duration asked of sleep, in order. */
  readonly sleeps: number[] = [];
  gated = false;
  readonly #parked: { ms: number; resolve: () => void }[] = [];

  constructor(startMs: number) {
    this.t = startMs;
  }

  readonly sleep = (ms: number): Promise<void> => {
    this.sleeps.push(ms);
    // A real clock (Date.now) only ever shows whole milliseconds.
    const elapsedMs = Math.ceil(ms);
    if (!this.gated) {
      this.t += elapsedMs;
      return Promise.resolve();
    }
    return new Promise<void>((resolve) => this.#parked.push({ ms: elapsedMs, resolve }));
  };

  advance(ms: number): void {
    this.t += ms;
  }

  get parked(): number {
    return this.#parked.length;
  }

  /** Ends every parked sleep: the clock moves by the longest of them. */
  wake(): void {
    const woken = this.#parked.splice(0);
    this.t += Math.max(0, ...woken.map((s) => s.ms));
    for (const s of woken) s.resolve();
  }

  /** Wakes parked sleepers turn after turn until every promise has settled. */
  async wakeUntilSettled(promises: Promise<unknown>[]): Promise<void> {
    const tracked = promises.map((p) => track(p));
    for (let turn = 0; turn < 2000; turn++) {
      if (tracked.every((p) => p.settled())) return;
      this.wake();
      await flush();
    }
    throw new Error('sleepers never settled');
  }
}

export type Answer = Grant | ServiceError | 'hold';

export interface TokenCall {
  app: { appid: string; secret: string };
  api: TokenApi;
  forceRefresh: boolean;
  deadlineAtMs: number;
  /** Settles this call (when the responder held it). */
  answer: Deferred<Grant>;
  /** Attempts repeated inside the call (WeChat busy), which the responder may set: each calls beforeRetry. */
  retries?: number;
}

export interface TicketCall {
  appid: string;
  accessToken: string;
  type: TicketType;
  deadlineAtMs: number;
  answer: Deferred<Grant>;
}

/**
 * The WeChatApi port, scripted. By default every token call is granted a new token `AT-<n>` and every
 * ticket call a new ticket, both for 7200 s; a responder returning 'hold' leaves the call pending
 * for the test to settle through `call.answer`.
 */
export class FakeWeChat implements WeChatApi {
  readonly tokenCalls: TokenCall[] = [];
  readonly ticketCalls: TicketCall[] = [];
  /** 'token' or 'ticket:<type>' in call order. */
  readonly sequence: string[] = [];
  tokenResponder: (call: TokenCall, n: number) => Answer = (_call, n) => ({
    value: `AT-${n}`,
    expiresInSeconds: 7200,
  });
  ticketResponder: (call: TicketCall, n: number) => Answer = (call, n) => ({
    value: `${call.type}-ticket-${n}`,
    expiresInSeconds: 7200,
  });

  async fetchAccessToken(
    app: { appid: string; secret: string },
    api: TokenApi,
    options: { deadlineAtMs: number; forceRefresh?: boolean; beforeRetry?: () => void },
  ): Promise<Grant> {
    const call: TokenCall = {
      app: { appid: app.appid, secret: app.secret },
      api,
      forceRefresh: options.forceRefresh === true,
      deadlineAtMs: options.deadlineAtMs,
      answer: deferred<Grant>(),
    };
    this.tokenCalls.push(call);
    this.sequence.push('token');
    settle(call.answer, this.tokenResponder(call, this.tokenCalls.length));
    for (let i = 0; i < (call.retries ?? 0); i++) options.beforeRetry?.();
    return call.answer.promise;
  }

  async fetchTicket(
    appid: string,
    accessToken: string,
    type: TicketType,
    options: { deadlineAtMs: number },
  ): Promise<Grant> {
    const call: TicketCall = {
      appid,
      accessToken,
      type,
      deadlineAtMs: options.deadlineAtMs,
      answer: deferred(),
    };
    this.ticketCalls.push(call);
    this.sequence.push(`ticket:${type}`);
    settle(call.answer, this.ticketResponder(call, this.ticketCalls.length));
    return call.answer.promise;
  }

  /** clear_quota/v2 calls, and their answer (default: success). */
  readonly clearQuotaCalls: { appid: string; secret: string }[] = [];
  clearQuotaResponder: (app: { appid: string; secret: string }) => ServiceError | undefined = () => undefined;

  async clearQuota(app: { appid: string; secret: string }): Promise<void> {
    this.clearQuotaCalls.push({ appid: app.appid, secret: app.secret });
    this.sequence.push('clear_quota');
    const failure = this.clearQuotaResponder(app);
    if (failure) throw failure;
  }

  /** getApiQuota calls in order; `outsideCalls` adds calls of a fetcher outside the service to `used`. */
  readonly quotaCalls: { appid: string; accessToken: string; cgiPath: string }[] = [];
  readonly outsideCalls = new Map<string, number>();
  /**
   * Default: WeChat's count of the calls it saw — classic token calls (or getticket calls) of the app
   * made through this fake, plus `outsideCalls` for /cgi-bin/token — against a limit of 2000.
   */
  quotaResponder: (call: { appid: string; accessToken: string; cgiPath: string }) => ApiQuota | ServiceError =
    (call) => {
      const used =
        call.cgiPath === '/cgi-bin/token'
          ? this.tokenCalls.filter((c) => c.app.appid === call.appid && c.api === 'classic').length +
            (this.outsideCalls.get(call.appid) ?? 0)
          : this.ticketCalls.filter((c) => c.appid === call.appid).length;
      const dailyLimit = call.cgiPath === '/cgi-bin/token' ? 2000 : 100_000;
      return { dailyLimit, used, remain: dailyLimit - used };
    };

  async getApiQuota(appid: string, accessToken: string, cgiPath: string): Promise<ApiQuota> {
    const call = { appid, accessToken, cgiPath };
    this.quotaCalls.push(call);
    this.sequence.push(`quota:${cgiPath}`);
    const answer = this.quotaResponder(call);
    if (answer instanceof ServiceError) throw answer;
    return answer;
  }

  /** From now on, token calls stay pending until the test settles them. */
  holdTokens(): void {
    this.tokenResponder = () => 'hold';
  }
}

function settle(answer: Deferred<Grant>, with_: Answer): void {
  if (with_ === 'hold') return;
  if (with_ instanceof Error) answer.reject(with_);
  else answer.resolve(with_);
}

/** Telemetry as a list of events. */
export class RecordingTelemetry implements Telemetry {
  readonly events: CoreEvent[] = [];

  of<N extends CoreEvent['event']>(name: N): Extract<CoreEvent, { event: N }>[] {
    return this.events.filter((e): e is Extract<CoreEvent, { event: N }> => e.event === name);
  }

  emit(event: CoreEvent): void {
    this.events.push(event);
  }
}

/**
 * A KeyValueStore over another (one shared MemoryStore = one Memcached), which records what it is
 * asked, can be taken down (every call throws `cache_unavailable`), and can run a hook before an `add`.
 */
export class InstrumentedStore implements KeyValueStore {
  readonly inner: KeyValueStore;
  down = false;
  readonly reads: string[] = [];
  readonly sets: { key: string; value: string; ttlSeconds: number }[] = [];
  readonly adds: string[] = [];
  /** Runs (once) before the next `add`, e.g. to let a peer finish first. */
  beforeAdd: ((key: string) => Promise<void>) | undefined;

  constructor(inner: KeyValueStore) {
    this.inner = inner;
  }

  #check(): void {
    if (this.down) throw new ServiceError('cache_unavailable', 'memcached did not answer (test outage)');
  }

  async get(key: string): Promise<string | null> {
    this.#check();
    this.reads.push(key);
    return this.inner.get(key);
  }
  async set(key: string, value: string, ttlSeconds: number): Promise<void> {
    this.#check();
    this.sets.push({ key, value, ttlSeconds });
    return this.inner.set(key, value, ttlSeconds);
  }
  async add(key: string, value: string, ttlSeconds: number): Promise<boolean> {
    const hook = this.beforeAdd;
    if (hook) {
      this.beforeAdd = undefined;
      await hook(key);
    }
    this.#check();
    this.adds.push(key);
    return this.inner.add(key, value, ttlSeconds);
  }
  async delete(key: string): Promise<void> {
    this.#check();
    return this.inner.delete(key);
  }
  async gets(key: string): Promise<{ value: string; cas: string } | null> {
    this.#check();
    this.reads.push(key);
    return this.inner.gets(key);
  }
  async deleteIfUnchanged(key: string, cas: string): Promise<boolean> {
    this.#check();
    return this.inner.deleteIfUnchanged(key, cas);
  }
  async increment(key: string, ttlSeconds: number): Promise<number> {
    this.#check();
    return this.inner.increment(key, ttlSeconds);
  }
  async close(): Promise<void> {
    return this.inner.close();
  }
}

/** A provider whose secret is rotated behind the service's back: `get({reload: true})` sees the new one. */
export class RotatingCredentials implements SecretSource {
  #current: AppConfig;
  readonly #next: AppConfig;
  reloads = 0;

  constructor(current: AppConfig, rotatedSecret: string) {
    this.#current = current;
    this.#next = { ...current, secret: rotatedSecret };
  }

  async get(options: { reload?: boolean } = {}): Promise<Credentials> {
    if (options.reload) {
      this.reloads++;
      this.#current = this.#next;
    }
    return { apps: new Map([[this.#current.appid, this.#current]]), clients: [] };
  }
}
