import type { Socket } from 'node:net';
import memjs from 'memjs';
import { ServiceError } from '../errors.ts';
import type { KeyValueStore } from '../ports.ts';
import { type MemjsServerInternals, type MemjsSocketFactory, useSocketFactory } from './memjs-socket.ts';
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
  /** memjs's raw request path (binary protocol), for the operations it has no method for (CAS). */
  perform(
    key: string,
    request: Buffer,
    seq: number,
    callback: (err: Error | null, response: RawResponse) => void,
  ): void;
  incrSeq(): void;
  seq: number;
}

/** A binary-protocol response as memjs parses it. */
export interface RawResponse {
  header: { status: number; cas: Buffer };
  val: Buffer;
}

/** Binary protocol opcodes and statuses (memcached's protocol_binary.txt). */
const OP_GET = 0x00;
const OP_DELETE = 0x04;
const STATUS_OK = 0x0000;
const STATUS_NOT_FOUND = 0x0001;
const STATUS_EXISTS = 0x0002;

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
  /** Opens each server's socket instead of memjs (TLS, named connection errors: see memjs-socket.ts). */
  socket?: { factory: MemjsSocketFactory; tls: boolean };
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
    for (const server of (real as unknown as { servers: MemjsServer[] }).servers) {
      const { socket } = options;
      if (socket) useSocketFactory(server as unknown as MemjsServerInternals, socket.factory, socket.tls);
      this.#trackSockets(server);
    }
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

  async gets(key: string): Promise<{ value: string; cas: string } | null> {
    assertValidKey(key);
    const response = await this.#call('gets', () => this.#raw(key, OP_GET));
    if (response.header.status === STATUS_NOT_FOUND) return null;
    if (response.header.status !== STATUS_OK) throw statusError('gets', response.header.status);
    return { value: response.val.toString('utf8'), cas: response.header.cas.toString('hex') };
  }

  async deleteIfUnchanged(key: string, cas: string): Promise<boolean> {
    assertValidKey(key);
    if (!/^[0-9a-f]{16}$/.test(cas)) throw new Error(`invalid CAS value of length ${cas.length}`);
    const response = await this.#call('delete', () => this.#raw(key, OP_DELETE, Buffer.from(cas, 'hex')));
    const { status } = response.header;
    if (status === STATUS_OK) return true;
    if (status === STATUS_NOT_FOUND || status === STATUS_EXISTS) return false;
    throw statusError('delete', status);
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

  /** A request memjs has no method for: key only, no extras or value, with an optional CAS. */
  #raw(key: string, opcode: number, cas?: Buffer): Promise<RawResponse> {
    const keyBytes = Buffer.from(key, 'utf8');
    this.#client.incrSeq();
    const seq = this.#client.seq;
    const request = Buffer.alloc(24 + keyBytes.length);
    request.writeUInt8(0x80, 0); // request magic
    request.writeUInt8(opcode, 1);
    request.writeUInt16BE(keyBytes.length, 2);
    request.writeUInt32BE(keyBytes.length, 8); // total body: the key
    request.writeUInt32BE(seq, 12); // opaque: memjs matches the response by it
    cas?.copy(request, 16);
    keyBytes.copy(request, 24);
    return new Promise((resolve, reject) =>
      this.#client.perform(key, request, seq, (err, response) => (err ? reject(err) : resolve(response))),
    );
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

function statusError(operation: string, status: number): ServiceError {
  return new ServiceError(
    'cache_unavailable',
    `Memcached ${operation} answered status 0x${status.toString(16)}`,
  );
}

function describe(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  return text.slice(0, 200);
}
