import { connect, type Socket } from 'node:net';
import memjs from 'memjs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type MemcachedProcess, startMemcached } from '../../../local/memcached-server.ts';

/** The memjs 1.3.x Server internals these tests rely on to find every socket memjs opens. */
interface MemjsServerInternals {
  _socket?: Socket;
  sock(sasl: boolean, go: (socket: Socket) => void): void;
}

/** Sends `stats settings` over the text protocol and returns the settings as a map. */
function statsSettings(port: number): Promise<Map<string, string>> {
  return new Promise((resolve, reject) => {
    let text = '';
    const socket = connect({ host: '127.0.0.1', port }, () => socket.write('stats settings\r\n'));
    socket.setEncoding('utf8');
    socket.setTimeout(2_000, () => socket.destroy(new Error('stats settings timed out')));
    socket.on('error', reject);
    socket.on('data', (chunk: string) => {
      text += chunk;
      if (!text.endsWith('END\r\n')) return;
      socket.destroy();
      const settings = new Map<string, string>();
      for (const line of text.split('\r\n')) {
        const [, key, value] = line.split(' ');
        if (key !== undefined && value !== undefined) settings.set(key, value);
      }
      resolve(settings);
    });
  });
}

describe('startMemcached', () => {
  let mc: MemcachedProcess;
  const clients: memjs.Client[] = [];
  /** Every socket any test client opened, including the ones memjs lost track of. */
  const sockets = new Set<Socket>();

  /**
   * A memjs client that fails fast (200 ms per request, `retries: 1` = a single attempt, quiet
   * logger) and whose sockets are all recorded. memjs 1.3.2 loses sockets: after a request
   * timeout it `end()`s the old socket and opens a new one on the next request; when the old one
   * finally closes (a paused server closes it once resumed), its 'close' handler sets
   * `server._socket = undefined`, which usually orphans the NEW, healthy connection.
   * `client.close()` cannot reach it, and it keeps a plain node process alive for as long as
   * memcached keeps it open (vitest SIGTERMs its workers, so it would not hang vitest itself).
   */
  const newClient = (): memjs.Client => {
    const client = memjs.Client.create(mc.address, { timeout: 0.2, retries: 1, logger: { log: () => {} } });
    for (const server of client.servers as unknown as MemjsServerInternals[]) {
      const originalSock = server.sock.bind(server);
      server.sock = (sasl, go) => {
        originalSock(sasl, go);
        if (server._socket) sockets.add(server._socket);
      };
    }
    clients.push(client);
    return client;
  };

  beforeAll(async () => {
    mc = await startMemcached();
  });

  afterEach(() => {
    for (const client of clients.splice(0)) client.close();
    for (const socket of sockets) socket.destroy();
    sockets.clear();
  });

  afterAll(async () => {
    await mc?.stop();
  });

  it('listens on 127.0.0.1 and memjs set/get works against address', async () => {
    expect(mc.host).toBe('127.0.0.1');
    expect(mc.address).toBe(`127.0.0.1:${mc.port}`);
    expect(mc.pid).toBeGreaterThan(0);
    const client = newClient();
    await client.set('greeting', 'hello', { expires: 60 });
    expect((await client.get('greeting')).value?.toString()).toBe('hello');
  });

  it('runs TCP-only with 64 MB, or the memory asked for', async () => {
    const settings = await statsSettings(mc.port);
    expect(settings.get('udpport')).toBe('0');
    expect(settings.get('tcpport')).toBe(String(mc.port));
    expect(settings.get('maxbytes')).toBe(String(64 * 1024 * 1024));

    const small = await startMemcached({ memoryMb: 16 });
    try {
      expect(small.port).not.toBe(mc.port);
      expect((await statsSettings(small.port)).get('maxbytes')).toBe(String(16 * 1024 * 1024));
    } finally {
      await small.kill();
    }
  });

  it('flush() empties the cache', async () => {
    const client = newClient();
    await client.set('k', 'v', {});
    await mc.flush();
    expect((await client.get('k')).value).toBeNull();
  });

  it('kill() makes a get fail, restart() brings it back empty on the same port', async () => {
    const client = newClient();
    await client.set('survivor', 'no', {});
    const { port, pid } = mc;

    await mc.kill();
    expect(() => process.kill(pid, 0)).toThrow();
    // The kernel closed memjs's connection with the process, so the get fails at once; the error
    // depends on timing: "This socket has been ended by the other party" (memjs had not yet seen
    // the close) or "connect ECONNREFUSED" (it reconnects and is refused).
    await expect(client.get('survivor')).rejects.toThrow(/ended by the other party|ECONNREFUSED|ECONNRESET/);
    await expect(mc.flush()).rejects.toThrow();

    await mc.restart();
    expect(mc.port).toBe(port);
    expect(mc.pid).not.toBe(pid);
    const fresh = newClient();
    expect((await fresh.get('survivor')).value).toBeNull();
    await fresh.set('fresh', 'yes', {});
    // The first client reconnects by itself once the server is back.
    expect((await client.get('fresh')).value?.toString()).toBe('yes');
  });

  it('pause() makes a get time out, resume() makes it succeed again', async () => {
    const client = newClient();
    await client.set('frozen', 'value', {});

    mc.pause();
    try {
      const started = performance.now();
      await expect(client.get('frozen')).rejects.toThrow('socket timed out waiting on response.');
      expect(performance.now() - started).toBeGreaterThanOrEqual(150);
      expect(performance.now() - started).toBeLessThan(2_000);
    } finally {
      mc.resume();
    }
    expect((await client.get('frozen')).value?.toString()).toBe('value');

    // Usually (timing-dependent) memjs has now lost track of the connection it just used, see
    // newClient(); afterEach destroys it.
  });

  it('stop() leaves no process behind', async () => {
    const { pid } = mc;
    expect(() => process.kill(pid, 0)).not.toThrow();
    await mc.stop();
    expect(() => process.kill(pid, 0)).toThrow();
    await mc.stop(); // a second stop is a no-op
    expect(() => mc.pause()).toThrow(/not running/);
  });
});
