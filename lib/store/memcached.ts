import type { Socket } from 'node:net';
import memjs from 'memjs';
import type { KeyValueStore } from '../ports.ts';
import { BackendAnswer, CallGuard, DroppedByReset } from './call-guard.ts';
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
  /** The server a key goes to (memjs's hashing). */
  server?(key: string): { error(err: Error): void; responseBuffer?: Buffer } | null;
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
  /** How long one attempt may take while the process runs, connecting included (see call-guard.ts). */
  timeoutMs: number;
  /** Receives memjs's own diagnostics (server address and error text only). */
  onDiagnostic?: (message: string) => void;
  /** After Memcached was found unreachable, calls fail at once for this long (default 1000 ms). */
  failFastMs?: number;
  /** Clock of the fail-fast window (epoch ms); defaults to Date.now. */
  now?: () => number;
  /** Monotonic clock for stall detection (ms); defaults to performance.now. */
  monotonic?: () => number;
  /** Opens each server's socket instead of memjs (TLS, named connection errors: see memjs-socket.ts). */
  socket?: { factory: MemjsSocketFactory; tls: boolean };
}

/**
 * memjs's own timers only clean up: ours decide (call-guard.ts). They must outlast any freeze of the
 * process, or memjs drops a healthy connection on the thaw and fails every call in flight on it.
 */
const MEMJS_TIMEOUT_SECONDS = 60;

/**
 * {@link KeyValueStore} over memjs (binary protocol, no TLS).
 *
 * memjs is configured so that one call is one request: `retries: 1` (memjs counts attempts) and no
 * failover. Timeouts, the retry on a fresh connection and the outage window are the call guard's
 * (call-guard.ts): a retried `add` whose first attempt was stored answers "exists", which the lock
 * resolves by reading its owner back (lock.ts).
 */
export class MemcachedStore implements KeyValueStore {
  readonly #client: MemjsLike;
  readonly #sockets: Set<Socket>;
  readonly #servers: MemjsServer[] = [];
  readonly #guard: CallGuard;

  constructor(options: MemcachedStoreOptions, client?: MemjsLike) {
    this.#sockets = new Set();
    this.#guard = new CallGuard(options);
    if (client) {
      this.#client = client;
      return;
    }
    const real = memjs.Client.create(options.servers.join(','), {
      retries: 1,
      failover: false,
      timeout: MEMJS_TIMEOUT_SECONDS,
      conntimeout: MEMJS_TIMEOUT_SECONDS,
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
    const { value } = await this.#call('get', key, () => this.#client.get(key));
    return value === null ? null : value.toString('utf8');
  }

  async set(key: string, value: string, ttlSeconds: number): Promise<void> {
    assertValidKey(key);
    assertValidTtl(ttlSeconds);
    await this.#call('set', key, () => this.#client.set(key, value, { expires: ttlSeconds }));
  }

  async add(key: string, value: string, ttlSeconds: number): Promise<boolean> {
    assertValidKey(key);
    assertValidTtl(ttlSeconds);
    return (
      (await this.#call('add', key, () => this.#client.add(key, value, { expires: ttlSeconds }))) === true
    );
  }

  async delete(key: string): Promise<void> {
    assertValidKey(key);
    await this.#call('delete', key, () => this.#client.delete(key));
  }

  async gets(key: string): Promise<{ value: string; cas: string } | null> {
    assertValidKey(key);
    return this.#call('gets', key, async () => {
      const response = await this.#raw(key, OP_GET);
      if (response.header.status === STATUS_NOT_FOUND) return null;
      if (response.header.status !== STATUS_OK) throw statusAnswer('gets', response.header.status);
      return { value: response.val.toString('utf8'), cas: response.header.cas.toString('hex') };
    });
  }

  async deleteIfUnchanged(key: string, cas: string): Promise<boolean> {
    assertValidKey(key);
    if (!/^[0-9a-f]{16}$/.test(cas)) throw new Error(`invalid CAS value of length ${cas.length}`);
    return this.#call('delete', key, async () => {
      const { status } = (await this.#raw(key, OP_DELETE, Buffer.from(cas, 'hex'))).header;
      if (status === STATUS_OK) return true;
      if (status === STATUS_NOT_FOUND || status === STATUS_EXISTS) return false;
      throw statusAnswer('delete', status);
    });
  }

  async increment(key: string, ttlSeconds: number): Promise<number> {
    assertValidKey(key);
    assertValidTtl(ttlSeconds);
    return this.#call('increment', key, async () => {
      const result = await this.#client.increment(key, 1, { initial: 1, expires: ttlSeconds });
      if (result.success !== true || typeof result.value !== 'number') {
        throw new BackendAnswer('increment returned no value');
      }
      return result.value;
    });
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

  bound(deadlineAtMs: number): void {
    this.#guard.bound(deadlineAtMs);
  }

  async close(): Promise<void> {
    this.#client.close();
    for (const socket of this.#sockets) socket.destroy();
    this.#sockets.clear();
  }

  /** One call under the guard; a timeout drops the key's connection so the retry opens a fresh one. */
  #call<T>(operation: string, key: string, run: () => Promise<T>): Promise<T> {
    const attempt = () =>
      run().catch((err: unknown) => {
        // memjs reports an error status Memcached answered as `MemJS <OP>: <text>`: an answer, not an outage.
        if (err instanceof Error && /^MemJS [A-Z]+: /.test(err.message)) throw new BackendAnswer(err.message);
        throw err;
      });
    return this.#guard.run(operation, attempt, () => {
      const server = this.#client.server?.(key);
      if (!server) return;
      // memjs fails every call in flight on that connection with this error: they retry, uncounted.
      server.error(new DroppedByReset('connection dropped after a call without an answer'));
      // memjs keeps the unparsed bytes of the dropped connection and would read the fresh one's
      // answers behind them, misaligned: every call on it would go unanswered.
      server.responseBuffer = Buffer.alloc(0);
      this.#destroyAbandonedSockets();
    });
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

function statusAnswer(operation: string, status: number): BackendAnswer {
  return new BackendAnswer(`${operation} answered status 0x${status.toString(16)}`);
}
