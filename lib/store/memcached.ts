import type { Socket } from 'node:net';
import memjs from 'memjs';
import { ServiceError } from '../errors.ts';
import type { KeyValueStore } from '../ports.ts';
import { assertValidKey, assertValidTtl } from './validate.ts';

/** The memjs calls this adapter uses, typed structurally so tests can stand in for memjs. */
export interface MemjsLike {
  get(key: string): Promise<{ value: Buffer | null }>;
  set(key: string, value: string, options: { expires: number }): Promise<boolean | null>;
  add(key: string, value: string, options: { expires: number }): Promise<boolean | null>;
  delete(key: string): Promise<boolean | null>;
  increment(
    key: string,
    amount: number,
    options: { initial: number; expires: number },
  ): Promise<{ success: boolean | null; value?: number | null }>;
  close(): void;
}

export interface MemcachedStoreOptions {
  /** `host:port` entries. */
  servers: string[];
  /** How long one call may take, connecting included. */
  timeoutMs: number;
  /** Receives memjs's own diagnostics (server address and error text only). */
  onDiagnostic?: (message: string) => void;
  /** After a failed call, further calls fail at once for this long (default 1000 ms). */
  failFastMs?: number;
  /** Clock of the fail-fast window (epoch ms); defaults to Date.now. */
  now?: () => number;
}

/**
 * {@link KeyValueStore} over memjs (binary protocol, no TLS).
 *
 * memjs is configured so that one call is one request: `retries: 1` (memjs counts attempts) and no
 * failover, so a lost reply surfaces as an error the caller can reason about instead of a silent
 * second `add` that reports "exists" for a lock this instance just took.
 */
export class MemcachedStore implements KeyValueStore {
  readonly #client: MemjsLike;
  readonly #sockets: Set<Socket>;
  readonly #servers: MemjsServer[] = [];
  /** How long a call may take, connecting included. */
  readonly #guardMs: number;
  readonly #failFastMs: number;
  readonly #now: () => number;
  /** After a failure, calls fail at once until then: an outage costs one timeout, not one per request. */
  #downUntilMs = 0;

  constructor(options: MemcachedStoreOptions, client?: MemjsLike) {
    this.#sockets = new Set();
    this.#guardMs = options.timeoutMs;
    this.#failFastMs = options.failFastMs ?? 1000;
    this.#now = options.now ?? Date.now;
    if (client) {
      this.#client = client;
      return;
    }
    // memjs's own timers sit well above ours: they only clean up. Ours decide (see #call).
    const memjsTimeout = Math.max(1, (options.timeoutMs * 4) / 1000);
    const real = memjs.Client.create(options.servers.join(','), {
      retries: 1,
      failover: false,
      timeout: memjsTimeout,
      conntimeout: memjsTimeout,
      keepAlive: true,
      expires: 0,
      logger: { log: (...parts: unknown[]) => options.onDiagnostic?.(parts.map(String).join(' ')) },
    });
    for (const server of (real as unknown as { servers: MemjsServer[] }).servers) this.#trackSockets(server);
    this.#client = real as unknown as MemjsLike;
  }

  async get(key: string): Promise<string | null> {
    assertValidKey(key);
    const { value } = await this.#call('get', () => this.#client.get(key));
    return value === null ? null : value.toString('utf8');
  }

  async set(key: string, value: string, ttlSeconds: number): Promise<void> {
    assertValidKey(key);
    assertValidTtl(ttlSeconds);
    await this.#call('set', () => this.#client.set(key, value, { expires: ttlSeconds }));
  }

  async add(key: string, value: string, ttlSeconds: number): Promise<boolean> {
    assertValidKey(key);
    assertValidTtl(ttlSeconds);
    return (await this.#call('add', () => this.#client.add(key, value, { expires: ttlSeconds }))) === true;
  }

  async delete(key: string): Promise<void> {
    assertValidKey(key);
    await this.#call('delete', () => this.#client.delete(key));
  }

  async increment(key: string, ttlSeconds: number): Promise<number> {
    assertValidKey(key);
    assertValidTtl(ttlSeconds);
    const result = await this.#call('increment', () =>
      this.#client.increment(key, 1, { initial: 1, expires: ttlSeconds }),
    );
    if (result.success !== true || typeof result.value !== 'number') {
      throw new ServiceError('cache_unavailable', 'Memcached increment returned no value');
    }
    return result.value;
  }

  async close(): Promise<void> {
    this.#client.close();
    for (const socket of this.#sockets) socket.destroy();
    this.#sockets.clear();
  }

  async #call<T>(operation: string, run: () => Promise<T>): Promise<T> {
    if (this.#now() < this.#downUntilMs) {
      throw new ServiceError(
        'cache_unavailable',
        `Memcached ${operation} skipped: it failed less than ${this.#failFastMs} ms ago`,
      );
    }
    // The deciding timer. When it fires, the answer may already sit unread in the socket because the
    // event loop was blocked (a module load, a long synchronous task): timers run before I/O in a
    // loop turn, which is how memjs's own timeout reports a healthy server as dead. So the timer
    // gives pending I/O one more turn (setImmediate runs after the poll phase) before it rejects.
    // It also bounds calls whose callback memjs loses when it orphans a connection.
    let timer: NodeJS.Timeout | undefined;
    const guard = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => setImmediate(() => reject(new Error(`no answer within ${this.#guardMs} ms`))),
        this.#guardMs,
      );
    });
    try {
      return await Promise.race([run(), guard]);
    } catch (err) {
      this.#destroyAbandonedSockets();
      this.#downUntilMs = this.#now() + this.#failFastMs;
      throw new ServiceError('cache_unavailable', `Memcached ${operation} failed: ${describe(err)}`, {
        cause: err,
      });
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * memjs abandons a socket after a request timeout (`sock.end()` then drops its reference), and a
   * half-closed socket to a frozen server stays open for minutes and keeps the process alive. Track
   * every socket memjs opens and destroy the ones it no longer uses.
   */
  #trackSockets(server: MemjsServer): void {
    const originalSock = server.sock.bind(server);
    const sockets = this.#sockets;
    server.sock = (sasl, go) => {
      const before = server._socket;
      originalSock(sasl, go);
      const after = server._socket;
      if (after && after !== before) {
        sockets.add(after);
        after.once('close', () => sockets.delete(after));
      }
    };
    this.#servers.push(server);
  }

  #destroyAbandonedSockets(): void {
    const live = new Set(this.#servers.map((s) => s._socket));
    for (const socket of this.#sockets) {
      if (!live.has(socket)) {
        socket.destroy();
        this.#sockets.delete(socket);
      }
    }
  }
}

/** The memjs Server internals the socket tracking relies on (memjs 1.3.x). */
interface MemjsServer {
  _socket?: Socket;
  sock(sasl: boolean, go: (socket: Socket) => void): void;
}

function describe(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  return text.slice(0, 200);
}
