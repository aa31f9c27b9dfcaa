/**
 * The text-protocol adapter against a scripted server: what it sends, and what it makes of replies
 * that are not what the request can be answered with. (Against real memcached: the contract suite.)
 */
import { type AddressInfo, createServer, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { TextMemcachedStore } from '../../../lib/store/memcached-text.ts';
import { failure } from '../../support/failure.ts';

/** A server that hands each complete request line (and data block) to `answer`. */
async function scripted(
  answer: (line: string, socket: Socket) => void,
): Promise<{ server: Server; port: number; lines: string[] }> {
  const lines: string[] = [];
  const server = createServer((socket) => {
    socket.on('error', () => {});
    let buffer = '';
    socket.on('data', (chunk: Buffer) => {
      buffer += chunk.toString('latin1');
      for (let end = buffer.indexOf('\r\n'); end >= 0; end = buffer.indexOf('\r\n')) {
        const line = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        lines.push(line);
        answer(line, socket);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: (server.address() as AddressInfo).port, lines };
}

const cleanup: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanup.splice(0)) await c();
});

async function storeAgainst(answer: (line: string, socket: Socket) => void) {
  const fake = await scripted(answer);
  const store = new TextMemcachedStore({
    node: { host: '127.0.0.1', port: fake.port, ip: null },
    tls: false,
    timeoutMs: 2000,
  });
  cleanup.push(async () => {
    await store.close();
    await new Promise<void>((resolve) => fake.server.close(() => resolve()));
  });
  return { store, lines: fake.lines };
}

describe('TextMemcachedStore requests', () => {
  it('sends set, add, gets, cas-delete and incr as memcached’s text protocol writes them', async () => {
    const { store, lines } = await storeAgainst((line, socket) => {
      if (line.startsWith('set ') || line.startsWith('add ')) return; // the data line follows
      if (line === 'v') socket.write('STORED\r\n');
      else if (line.startsWith('gets ')) socket.write('VALUE wts:k 0 1 42\r\nv\r\nEND\r\n');
      else if (line.startsWith('cas ')) return;
      else if (line === '') socket.write('STORED\r\n');
      else if (line.startsWith('incr ')) socket.write('7\r\n');
    });
    await store.set('wts:k', 'v', 60);
    expect(await store.add('wts:k', 'v', 30)).toBe(true);
    expect(await store.gets('wts:k')).toEqual({ value: 'v', cas: '42' });
    expect(await store.deleteIfUnchanged('wts:k', '42')).toBe(true);
    expect(await store.increment('wts:n', 60)).toBe(7);
    expect(lines).toEqual([
      'set wts:k 0 60 1',
      'v',
      'add wts:k 0 30 1',
      'v',
      'gets wts:k',
      // A negative exptime stores the item already expired: compare-and-delete in one command.
      'cas wts:k 0 -1 0 42',
      '',
      'incr wts:n 1',
    ]);
  });

  it('counts an absent counter from 1 with its TTL, and increments again when a peer created it first', async () => {
    let incrs = 0;
    const { store, lines } = await storeAgainst((line, socket) => {
      if (line.startsWith('incr ')) socket.write(++incrs === 1 ? 'NOT_FOUND\r\n' : '2\r\n');
      else if (line === '1') socket.write('NOT_STORED\r\n'); // the add lost to a peer's
    });
    expect(await store.increment('wts:n', 90)).toBe(2);
    expect(lines).toEqual(['incr wts:n 1', 'add wts:n 0 90 1', '1', 'incr wts:n 1']);
  });

  it('answers pipelined requests in order', async () => {
    let sending = Promise.resolve();
    const { store } = await storeAgainst((line, socket) => {
      const key = line.split(' ')[1] as string;
      // Each reply in two writes split mid-line (in request order), to exercise reassembly.
      const reply = `VALUE ${key} 0 ${key.length}\r\n${key}\r\nEND\r\n`;
      sending = sending.then(async () => {
        socket.write(reply.slice(0, 5));
        await new Promise((resolve) => setImmediate(resolve));
        socket.write(reply.slice(5));
      });
    });
    const keys = Array.from({ length: 30 }, (_, i) => `wts:k${i}`);
    expect(await Promise.all(keys.map((k) => store.get(k)))).toEqual(keys);
  });
});

describe('TextMemcachedStore replies it does not accept', () => {
  it.each([
    [
      'a value for another key',
      'VALUE wts:other 0 1\r\nx\r\nEND\r\n',
      /reply carries a key that was not asked for/,
    ],
    [
      'a length that does not match the data',
      'VALUE wts:k 0 5\r\nabc\r\nEND\r\n',
      /not followed by CRLF|no answer/,
    ],
    ['a malformed header', 'VALUE wts:k zero 1\r\nx\r\nEND\r\n', /unexpected reply line starting "VALUE"/],
    ['a storage reply to a get', 'STORED\r\n', /unexpected reply line starting "STORED"/],
    ['binary bytes', '\u0016\u0003\u0001\r\n', /unexpected reply line/],
  ])('fails a get on %s with cache_unavailable, and drops the connection', async (_what, reply, message) => {
    let connections = 0;
    const { store } = await storeAgainst((line, socket) => {
      if (line.startsWith('get ')) socket.write(connections === 1 ? reply : 'END\r\n');
    });
    connections = 1;
    const err = await failure(store.get('wts:k'));
    expect(err.code).toBe('cache_unavailable');
    expect(err.message).toMatch(/^Memcached get failed: /);
    expect(err.message).toMatch(message);
    // The next call works on a new connection.
    connections = 2;
    expect(await store.get('wts:k')).toBeNull();
  });

  it('passes SERVER_ERROR on as cache_unavailable and keeps the connection', async () => {
    const { store } = await storeAgainst((line, socket) => {
      if (line === 'v') socket.write('SERVER_ERROR out of memory storing object\r\n');
      else if (line.startsWith('get ')) socket.write('END\r\n');
    });
    const err = await failure(store.set('wts:k', 'v', 60));
    expect(err.message).toBe(
      'Memcached set failed: memcached answered "SERVER_ERROR out of memory storing object"',
    );
    expect(await store.get('wts:k')).toBeNull();
  });

  it('refuses a reply a storage command cannot get (DELETED to an add)', async () => {
    const { store } = await storeAgainst((line, socket) => {
      if (line === 'v') socket.write('DELETED\r\n');
    });
    const err = await failure(store.add('wts:k', 'v', 60));
    expect(err.message).toBe('Memcached add failed: unexpected reply "DELETED"');
  });

  it('rejects a CAS value that is not a decimal unique as a caller bug', async () => {
    const { store } = await storeAgainst(() => {});
    await expect(store.deleteIfUnchanged('wts:k', '00ff')).rejects.toThrow(/invalid CAS value/);
  });
});
