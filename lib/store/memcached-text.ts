/**
 * {@link KeyValueStore} over Memcached's text protocol, plain TCP or TLS: what ElastiCache Serverless
 * speaks (TLS and the text protocol only), and any node-based cluster.
 *
 * A small adapter of its own rather than a library: the text-protocol clients on npm either lack
 * gets/cas or got them wrong when tried (TOOLCHAIN.md), none checks replies strictly, and Auto
 * Discovery needs the same connection code for ElastiCache's `config get cluster` anyway.
 *
 * Protocol facts this relies on (memcached 1.6 protocol.txt, checked against memcached 1.6.18):
 * - `incr` has no initial value: an absent counter answers NOT_FOUND (see {@link increment}).
 * - `delete` has no CAS. `cas <key> <flags> <exptime> …` with a negative exptime stores the item
 *   already expired, so `cas <key> 0 -1 0 <unique>` is an atomic compare-and-delete: STORED when the
 *   unique matched (the key is gone), EXISTS when someone wrote it since, NOT_FOUND when it is absent.
 */
import { ServiceError } from '../errors.ts';
import type { KeyValueStore } from '../ports.ts';
import { CallTimeoutError, withTimeout } from './call-guard.ts';
import type { NodeAddress, TlsSettings } from './connection.ts';
import {
  ConnectionFailure,
  type Reply,
  type ReplyShape,
  ServerErrorReply,
  TextConnection,
} from './text-connection.ts';
import { assertValidKey, assertValidTtl } from './validate.ts';

/** One node, how to reach it, and how long a call may take. */
export interface TextMemcachedStoreOptions {
  node: NodeAddress;
  /** TLS settings, or false for plain TCP. */
  tls: TlsSettings | false;
  /** How long one call may take once the connection is up. */
  timeoutMs: number;
  /**
   * How much longer a call may take when it must wait for a new connection (default 1000 ms). A TLS
   * handshake costs tens of milliseconds of CPU — several hundred on a small Lambda instance or at a
   * cold start, when the first handshake also builds the CA store — which says nothing about the
   * server: slow is not down. Refused connections and TLS errors still fail at once.
   */
  connectAllowanceMs?: number;
  now?: () => number;
}

/** Default of {@link TextMemcachedStoreOptions.connectAllowanceMs}. */
export const CONNECT_ALLOWANCE_MS = 1000;

/** How many times `increment` may find its counter gone between `incr` and `add` (it expired meanwhile). */
const INCREMENT_ATTEMPTS = 3;

/**
 * The text-protocol adapter of one node (see the header). Every call is bounded by `timeoutMs` (plus
 * the connect allowance when it must open a connection) and fails with `cache_unavailable` naming
 * the cause; key and TTL errors are plain Errors (caller bugs).
 */
export class TextMemcachedStore implements KeyValueStore {
  readonly #connection: TextConnection;
  readonly #timeoutMs: number;
  readonly #connectAllowanceMs: number;

  constructor(options: TextMemcachedStoreOptions) {
    this.#timeoutMs = options.timeoutMs;
    this.#connectAllowanceMs = options.connectAllowanceMs ?? CONNECT_ALLOWANCE_MS;
    this.#connection = new TextConnection({
      node: options.node,
      tls: options.tls,
      // Several callers' timeouts with nothing received: the connection is gone, not slow.
      staleAfterMs: Math.max(1000, options.timeoutMs * 4),
      ...(options.now ? { now: options.now } : {}),
    });
  }

  async get(key: string): Promise<string | null> {
    assertValidKey(key);
    const block = await this.#call('get', async () => single(await this.#values(`get ${key}\r\n`, key)));
    return block === null ? null : block.data.toString('utf8');
  }

  async gets(key: string): Promise<{ value: string; cas: string } | null> {
    assertValidKey(key);
    const block = await this.#call('gets', async () => single(await this.#values(`gets ${key}\r\n`, key)));
    if (block === null) return null;
    if (block.cas === undefined)
      throw new ServiceError('cache_unavailable', 'Memcached gets answered no CAS unique');
    return { value: block.data.toString('utf8'), cas: block.cas };
  }

  async set(key: string, value: string, ttlSeconds: number): Promise<void> {
    assertValidKey(key);
    assertValidTtl(ttlSeconds);
    await this.#call('set', async () => {
      await this.#line(storage('set', key, value, ttlSeconds), ['STORED']);
    });
  }

  async add(key: string, value: string, ttlSeconds: number): Promise<boolean> {
    assertValidKey(key);
    assertValidTtl(ttlSeconds);
    return this.#call(
      'add',
      async () =>
        (await this.#line(storage('add', key, value, ttlSeconds), ['STORED', 'NOT_STORED'])) === 'STORED',
    );
  }

  async delete(key: string): Promise<void> {
    assertValidKey(key);
    await this.#call('delete', async () => {
      await this.#line(`delete ${key}\r\n`, ['DELETED', 'NOT_FOUND']);
    });
  }

  async deleteIfUnchanged(key: string, cas: string): Promise<boolean> {
    assertValidKey(key);
    if (!/^(0|[1-9][0-9]{0,19})$/.test(cas)) throw new Error(`invalid CAS value of length ${cas.length}`);
    return this.#call(
      'delete',
      async () =>
        (await this.#line(`cas ${key} 0 -1 0 ${cas}\r\n\r\n`, ['STORED', 'EXISTS', 'NOT_FOUND'])) ===
        'STORED',
    );
  }

  /**
   * `incr`; on NOT_FOUND `add` the counter at "1" with its TTL; on NOT_STORED (a peer created it in
   * between) `incr` again. No step can count twice or lose a count: `incr` is atomic, and only one
   * `add` can create the counter.
   */
  async increment(key: string, ttlSeconds: number): Promise<number> {
    assertValidKey(key);
    assertValidTtl(ttlSeconds);
    return this.#call('increment', async () => {
      for (let attempt = 1; attempt <= INCREMENT_ATTEMPTS; attempt++) {
        const line = await this.#line(`incr ${key} 1\r\n`, ['NOT_FOUND', /^(0|[1-9][0-9]{0,19})$/]);
        if (line !== 'NOT_FOUND') {
          const value = Number(line);
          if (!Number.isSafeInteger(value)) throw new ConnectionFailure('the counter is beyond 2^53');
          return value;
        }
        const created = await this.#line(storage('add', key, '1', ttlSeconds), ['STORED', 'NOT_STORED']);
        if (created === 'STORED') return 1;
      }
      throw new ConnectionFailure(`the counter disappeared between incr and add ${INCREMENT_ATTEMPTS} times`);
    });
  }

  async close(): Promise<void> {
    this.#connection.close();
  }

  /** Opens the connection now, so that the first call does not wait for it (a cold start's TLS handshake). */
  warm(): void {
    this.#connection.warm();
  }

  /** The `version` command: whether the server answers at all (health checks, benchmarks). */
  async ping(): Promise<void> {
    await this.#call('version', async () => {
      await this.#line('version\r\n', [/^VERSION [\x21-\x7e]{1,64}$/]);
    });
  }

  async #values(command: string, key: string) {
    const reply = await this.#connection.request(command, 'values', [key]);
    return expectBlocks(reply, 'values');
  }

  /** Sends a command answered by one line, which must be one of `allowed`. */
  async #line(command: string | Buffer, allowed: ReadonlyArray<string | RegExp>): Promise<string> {
    const reply = await this.#connection.request(command, 'line');
    if (reply.shape !== 'line') throw new ConnectionFailure('a one-line reply was expected');
    const { line } = reply;
    if (!allowed.some((a) => (typeof a === 'string' ? a === line : a.test(line)))) {
      const first = line.split(' ')[0]?.slice(0, 16) ?? '';
      const reason = `unexpected reply "${first}"`;
      // A reply that belongs to no command we sent: the stream no longer lines up with the requests.
      this.#connection.discard(reason);
      throw new ConnectionFailure(reason);
    }
    return line;
  }

  async #call<T>(operation: string, run: () => Promise<T>): Promise<T> {
    const boundMs = this.#connection.established
      ? this.#timeoutMs
      : this.#timeoutMs + this.#connectAllowanceMs;
    try {
      return await withTimeout(run, boundMs, { onTimeout: () => this.#connection.noteAbandoned() });
    } catch (err) {
      throw new ServiceError('cache_unavailable', `Memcached ${operation} failed: ${reason(err)}`, {
        cause: err,
      });
    }
  }
}

function storage(command: 'set' | 'add', key: string, value: string, ttlSeconds: number): Buffer {
  const data = Buffer.from(value, 'utf8');
  return Buffer.concat([
    Buffer.from(`${command} ${key} 0 ${ttlSeconds} ${data.length}\r\n`),
    data,
    Buffer.from('\r\n'),
  ]);
}

function expectBlocks(reply: Reply, shape: Exclude<ReplyShape, 'line'>) {
  if (reply.shape !== shape) throw new ConnectionFailure(`a ${shape} reply was expected`);
  return reply.blocks;
}

/** At most one block (a get of one key). */
function single<T>(blocks: T[]): T | null {
  if (blocks.length > 1) throw new ConnectionFailure('one key was asked for and several values came back');
  return blocks[0] ?? null;
}

function reason(err: unknown): string {
  if (err instanceof CallTimeoutError) return err.message;
  if (err instanceof ServerErrorReply || err instanceof ConnectionFailure) return err.message;
  return (err instanceof Error ? err.message : String(err)).slice(0, 200);
}
