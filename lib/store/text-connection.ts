/**
 * One connection speaking Memcached's text protocol (protocol.txt of memcached 1.6), plain or TLS,
 * with requests pipelined: replies come back in request order, so each reply belongs to the oldest
 * request still waiting.
 *
 * Every reply is parsed strictly. A line or block that is not exactly what the request can be
 * answered with means the stream can no longer be trusted to line up with the requests (for example,
 * after `CLIENT_ERROR bad data chunk` memcached reads the rest of the value as a command): the
 * connection is closed and every waiting request fails. The next request opens a new connection.
 *
 * A request given up by its caller's timeout stays in the queue, so its late reply is still consumed
 * and the next reply goes to the right request: one slow reply does not take the connection down.
 * A connection that has not sent a byte for a long while with requests waiting is closed instead.
 */
import type { Socket } from 'node:net';
import { explainConnectionError, type NodeAddress, openSocket, type TlsSettings } from './connection.ts';

/** The shapes of reply a request can get. */
export type ReplyShape =
  /** One line: STORED, NOT_STORED, EXISTS, NOT_FOUND, DELETED, TOUCHED, a number, VERSION … */
  | 'line'
  /** Zero or more `VALUE <key> <flags> <bytes> [<cas>]` blocks, then END (get, gets). */
  | 'values'
  /** Zero or more `CONFIG <type> <flags> <bytes>` blocks, then END (ElastiCache's `config get`). */
  | 'config';

/** One block of a `values` or `config` reply. */
export interface ValueBlock {
  /** The key (values) or the configuration type (config). */
  key: string;
  flags: number;
  data: Buffer;
  /** The CAS unique, decimal, when the command was `gets`. */
  cas?: string;
}

/** A parsed reply: the line of a one-line reply, or the blocks of a `values` or `config` reply. */
export type Reply = { shape: 'line'; line: string } | { shape: 'values' | 'config'; blocks: ValueBlock[] };

/** The server answered ERROR, CLIENT_ERROR or SERVER_ERROR. */
export class ServerErrorReply extends Error {
  override readonly name = 'ServerErrorReply';
  /** The reply line, as memcached sent it (at most 200 characters). */
  readonly line: string;

  constructor(line: string) {
    super(`memcached answered "${line}"`);
    this.line = line;
  }
}

/** The connection failed or the reply broke the protocol. The message says what to fix. */
export class ConnectionFailure extends Error {
  override readonly name = 'ConnectionFailure';
}

/** Longest reply line accepted (a VALUE line with a 250-byte key is about 300 bytes). */
const MAX_LINE_BYTES = 1024;
/** Largest value accepted in a reply: memcached's default item size limit. */
const MAX_VALUE_BYTES = 1024 * 1024;
/** More requests than this waiting on one connection means it is not being answered. */
const MAX_WAITING = 10_000;
const CRLF = Buffer.from('\r\n');

interface Waiting {
  shape: ReplyShape;
  /** Keys a `values` reply may carry (a reply for any other key is a protocol error). */
  keys: readonly string[] | undefined;
  sentAtMs: number;
  blocks: ValueBlock[];
  /** The header of the block whose data is being read. */
  block: { key: string; flags: number; bytes: number; cas?: string } | undefined;
  resolve(reply: Reply): void;
  reject(err: Error): void;
}

/** Where a {@link TextConnection} connects, and when it gives a silent connection up. */
export interface TextConnectionOptions {
  node: NodeAddress;
  /** TLS settings, or false for plain TCP. */
  tls: TlsSettings | false;
  /** A connection with requests waiting and no byte received for this long is closed. */
  staleAfterMs: number;
  now?: () => number;
}

/** One pipelined text-protocol connection, opened on first use and again after any failure (see the header). */
export class TextConnection {
  readonly #options: TextConnectionOptions;
  readonly #now: () => number;
  #socket: Socket | undefined;
  #waiting: Waiting[] = [];
  #buffer: Buffer = Buffer.alloc(0);
  /** Whether the server has sent anything on the current socket. */
  #answered = false;
  /** Whether the current socket is connected (and, with TLS, past its handshake). */
  #ready = false;
  #lastReceivedAtMs = 0;
  #closed = false;

  constructor(options: TextConnectionOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
  }

  /**
   * Sends `command` (complete, CRLF-terminated, value included) and resolves with its reply. Rejects
   * with {@link ServerErrorReply} for an error reply and {@link ConnectionFailure} when the connection
   * fails. Never times out by itself: callers bound it (see call-guard.ts).
   */
  request(command: Buffer | string, shape: ReplyShape, keys?: readonly string[]): Promise<Reply> {
    if (this.#closed) return Promise.reject(new ConnectionFailure('the store is closed'));
    if (this.#waiting.length >= MAX_WAITING) {
      return Promise.reject(new ConnectionFailure(`${MAX_WAITING} requests are waiting for an answer`));
    }
    const socket = this.#socket ?? this.#open();
    return new Promise<Reply>((resolve, reject) => {
      this.#waiting.push({
        shape,
        keys,
        sentAtMs: this.#now(),
        blocks: [],
        block: undefined,
        resolve,
        reject,
      });
      // Before the connection is up, Node buffers the write (TLS: until the handshake is done).
      socket.write(command);
    });
  }

  /**
   * Called when a caller gave up on a request: if nothing at all has come back for `staleAfterMs`
   * while requests waited, the connection is taken for dead and closed.
   */
  noteAbandoned(): void {
    const oldest = this.#waiting[0];
    if (!oldest || !this.#socket) return;
    const silentSinceMs = Math.max(oldest.sentAtMs, this.#lastReceivedAtMs);
    if (this.#now() - silentSinceMs >= this.#options.staleAfterMs) {
      this.#fail(new ConnectionFailure(`no answer on the connection for ${this.#options.staleAfterMs} ms`));
    }
  }

  /** Whether a request sent now goes out on a connection that is already up (no connect, no handshake). */
  get established(): boolean {
    return this.#socket !== undefined && this.#ready;
  }

  /** Opens the connection ahead of the first request (a TLS handshake then overlaps other work). */
  warm(): void {
    if (!this.#closed && !this.#socket) this.#open();
  }

  /**
   * Drops the connection because a reply, although well formed, is not one the request can get: the
   * stream may no longer line up with the requests. Waiting requests fail with `reason`.
   */
  discard(reason: string): void {
    this.#fail(new ConnectionFailure(reason));
  }

  /** Closes the connection; waiting requests fail. */
  close(): void {
    this.#closed = true;
    this.#fail(new ConnectionFailure('the store is closed'));
  }

  #open(): Socket {
    const tls = this.#options.tls;
    this.#answered = false;
    this.#ready = false;
    this.#buffer = Buffer.alloc(0);
    const socket = openSocket(this.#options.node, tls, () => {
      if (this.#socket === socket) this.#ready = true;
    });
    this.#socket = socket;
    socket.on('data', (chunk: Buffer) => {
      if (this.#socket !== socket) return;
      this.#answered = true;
      this.#lastReceivedAtMs = this.#now();
      this.#receive(chunk);
    });
    socket.on('error', (err) => {
      if (this.#socket !== socket) return;
      this.#fail(
        new ConnectionFailure(explainConnectionError(err, tls !== false, this.#answered), { cause: err }),
      );
    });
    socket.on('close', () => {
      if (this.#socket !== socket) return;
      this.#fail(
        new ConnectionFailure(
          this.#answered
            ? 'the server closed the connection'
            : tls === false
              ? 'the server closed the connection before answering: if it requires TLS, set MEMCACHED_TLS=true'
              : 'the server closed the connection during the TLS handshake',
        ),
      );
    });
    return socket;
  }

  /** Drops the socket and fails every waiting request with `err`. */
  #fail(err: Error): void {
    const socket = this.#socket;
    this.#socket = undefined;
    this.#buffer = Buffer.alloc(0);
    socket?.destroy();
    const waiting = this.#waiting;
    this.#waiting = [];
    for (const w of waiting) w.reject(err);
  }

  #receive(chunk: Buffer): void {
    this.#buffer = this.#buffer.length === 0 ? chunk : Buffer.concat([this.#buffer, chunk]);
    try {
      while (this.#buffer.length > 0) {
        const head = this.#waiting[0];
        if (!head) throw new ConnectionFailure('the server sent data no request asked for');
        if (!this.#step(head)) break;
      }
    } catch (err) {
      this.#fail(err instanceof ConnectionFailure ? err : new ConnectionFailure(String(err)));
    }
  }

  /** Consumes what it can for the oldest request; false when more bytes are needed. */
  #step(head: Waiting): boolean {
    if (head.block) {
      const { bytes } = head.block;
      if (this.#buffer.length < bytes + 2) return false;
      if (!this.#buffer.subarray(bytes, bytes + 2).equals(CRLF)) {
        throw new ConnectionFailure('a value in the reply is not followed by CRLF');
      }
      const { key, flags, cas } = head.block;
      head.blocks.push({
        key,
        flags,
        data: Buffer.from(this.#buffer.subarray(0, bytes)),
        ...(cas ? { cas } : {}),
      });
      head.block = undefined;
      this.#consume(bytes + 2);
      return true;
    }
    const end = this.#buffer.indexOf(CRLF);
    if (end < 0) {
      if (this.#buffer.length > MAX_LINE_BYTES) throw new ConnectionFailure('a reply line is too long');
      return false;
    }
    if (end > MAX_LINE_BYTES) throw new ConnectionFailure('a reply line is too long');
    const line = this.#buffer.toString('latin1', 0, end);
    this.#consume(end + 2);
    if (!/^[\x20-\x7e]*$/.test(line)) throw new ConnectionFailure(describeUnexpected(line));

    if (line === 'ERROR' || line.startsWith('SERVER_ERROR ') || line.startsWith('CLIENT_ERROR ')) {
      this.#waiting.shift();
      head.reject(new ServerErrorReply(line.slice(0, 200)));
      // After CLIENT_ERROR memcached may read the rest of our request as commands: resynchronise.
      if (line.startsWith('CLIENT_ERROR '))
        this.#fail(new ConnectionFailure(`memcached answered "${line.slice(0, 200)}"`));
      return true;
    }
    if (head.shape === 'line') {
      this.#waiting.shift();
      head.resolve({ shape: 'line', line });
      return true;
    }
    if (line === 'END') {
      this.#waiting.shift();
      head.resolve({ shape: head.shape, blocks: head.blocks });
      return true;
    }
    head.block = parseBlockHeader(line, head);
    return true;
  }

  #consume(bytes: number): void {
    this.#buffer = this.#buffer.subarray(bytes);
  }
}

/** `VALUE <key> <flags> <bytes> [<cas>]` or `CONFIG <type> <flags> <bytes>`, strictly. */
function parseBlockHeader(line: string, head: Waiting): Waiting['block'] {
  const parts = line.split(' ');
  const expected = head.shape === 'values' ? 'VALUE' : 'CONFIG';
  const [word, key, flags, bytes, cas] = parts;
  const casAllowed = head.shape === 'values';
  if (
    word !== expected ||
    parts.length < 4 ||
    parts.length > (casAllowed ? 5 : 4) ||
    key === undefined ||
    !/^[\x21-\x7e]{1,250}$/.test(key) ||
    !isUint(flags, 10) ||
    !isUint(bytes, 7) ||
    Number(flags) > 0xffff_ffff ||
    Number(bytes) > MAX_VALUE_BYTES ||
    (cas !== undefined && !isUint(cas, 20))
  ) {
    throw new ConnectionFailure(describeUnexpected(line));
  }
  if (head.keys !== undefined && !head.keys.includes(key)) {
    throw new ConnectionFailure('the reply carries a key that was not asked for');
  }
  if (head.blocks.length >= 64) throw new ConnectionFailure('the reply carries too many values');
  return { key, flags: Number(flags), bytes: Number(bytes), ...(cas !== undefined ? { cas } : {}) };
}

function isUint(text: string | undefined, maxDigits: number): text is string {
  return text !== undefined && text.length <= maxDigits && /^(0|[1-9][0-9]*)$/.test(text);
}

/** A protocol error's message: what arrived (keys and values are never quoted: they may be tokens). */
function describeUnexpected(line: string): string {
  const first = line.split(' ')[0] ?? '';
  return `unexpected reply line starting "${first.slice(0, 16).replace(/[^\x20-\x7e]/g, '?')}"`;
}
