/**
 * The undici transport against local servers on port 0: what it sends, what it returns, and how it
 * classifies each way a connection can fail — the distinction the client's retry rule rests on
 * (`not_sent` may be repeated even for a classic token call; `timeout` and `interrupted` may not).
 * The timeout cases wait for the transport's own timer (tens of milliseconds); nothing asserts
 * elapsed time.
 */
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createTcpServer, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { HttpOutcome, HttpRequest } from '../../../lib/wechat/transport.ts';
import { UndiciTransport } from '../../../lib/wechat/undici-transport.ts';
import { TEST_SECRET } from '../../support/secrets.ts';

let servers: Server[] = [];
let sockets: Socket[] = [];
let transport: UndiciTransport | undefined;

afterEach(async () => {
  await transport?.close();
  transport = undefined;
  for (const socket of sockets) socket.destroy();
  for (const server of servers) server.close();
  servers = [];
  sockets = [];
});

async function listen<S extends Server>(server: S): Promise<{ server: S; origin: string }> {
  servers.push(server);
  server.on('connection', (socket: Socket) => sockets.push(socket));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return { server, origin: `http://127.0.0.1:${port}` };
}

/** A raw TCP server: `onRequest` sees the socket once the first request bytes have arrived. */
async function rawServer(onRequest: (socket: Socket) => void) {
  const received: string[] = [];
  const { origin } = await listen(
    createTcpServer((socket) => {
      socket.once('data', (chunk) => {
        received.push(chunk.toString('latin1'));
        onRequest(socket);
      });
      socket.on('error', () => {});
    }),
  );
  return { origin, received };
}

function open(options: ConstructorParameters<typeof UndiciTransport>[0] = {}): UndiciTransport {
  transport = new UndiciTransport(options);
  return transport;
}

/** A request as the client sends it for a classic token: the secret is in the query. */
const classic = (origin: string, overrides: Partial<HttpRequest> = {}): HttpRequest => ({
  method: 'GET',
  url: `${origin}/cgi-bin/token?grant_type=client_credential&appid=wx1&secret=${TEST_SECRET}`,
  timeoutMs: 2000,
  maxBodyBytes: 64 * 1024,
  ...overrides,
});

/** A failure outcome carries a kind and a code only: never the URL or its secret. */
function expectFailure(outcome: HttpOutcome, kind: HttpOutcome['kind'], code?: string): void {
  expect(outcome.kind).toBe(kind);
  if (code !== undefined) expect(outcome).toMatchObject({ code });
  expect(JSON.stringify(outcome)).not.toContain(TEST_SECRET);
  expect(JSON.stringify(outcome)).not.toContain('127.0.0.1');
}

describe('UndiciTransport exchanges', () => {
  it('sends the method, headers and body, and returns the status and the whole body', async () => {
    const seen: { method?: string; url?: string; type?: string; body: string }[] = [];
    const { origin } = await listen(
      createHttpServer((req: IncomingMessage, res: ServerResponse) => {
        let body = '';
        req.setEncoding('utf8').on('data', (chunk: string) => {
          body += chunk;
        });
        req.on('end', () => {
          seen.push({ method: req.method, url: req.url, type: req.headers['content-type'], body });
          res
            .writeHead(200, { 'content-type': 'application/json' })
            .end('{"access_token":"ACCESS","expires_in":7200}');
        });
      }),
    );
    const outcome = await open().send({
      method: 'POST',
      url: `${origin}/cgi-bin/stable_token`,
      headers: { 'content-type': 'application/json' },
      body: '{"appid":"wx1"}',
      timeoutMs: 2000,
      maxBodyBytes: 64 * 1024,
    });
    expect(outcome).toEqual({
      kind: 'response',
      status: 200,
      text: '{"access_token":"ACCESS","expires_in":7200}',
    });
    expect(seen).toEqual([
      { method: 'POST', url: '/cgi-bin/stable_token', type: 'application/json', body: '{"appid":"wx1"}' },
    ]);
  });

  it('returns a 5xx answer as a response: retrying is the client’s decision', async () => {
    const { origin } = await listen(createHttpServer((_req, res) => res.writeHead(502).end('Bad Gateway')));
    expect(await open().send(classic(origin))).toEqual({
      kind: 'response',
      status: 502,
      text: 'Bad Gateway',
    });
  });

  it('keeps an idle connection alive for the next request', async () => {
    let connections = 0;
    const { server, origin } = await listen(createHttpServer((_req, res) => res.end('{}')));
    server.on('connection', () => connections++);
    const t = open();
    for (let i = 0; i < 3; i++) {
      expect(await t.send(classic(origin))).toMatchObject({ kind: 'response' });
      // undici returns the connection to its pool just after the body ends; a request sent in that
      // same tick would open a second one.
      await new Promise((resolve) => setImmediate(resolve));
    }
    expect(connections).toBe(1);
  });

  it('returns a body of exactly maxBodyBytes, and stops reading a longer one: too_large', async () => {
    const { origin } = await listen(
      createHttpServer((req, res) => res.end('x'.repeat(req.url === '/exact' ? 1024 : 1_000_000))),
    );
    const t = open();
    const exact = await t.send({ ...classic(origin), url: `${origin}/exact`, maxBodyBytes: 1024 });
    expect(exact).toMatchObject({ kind: 'response', status: 200 });
    expect(exact.kind === 'response' && exact.text.length).toBe(1024);
    expect(await t.send({ ...classic(origin), url: `${origin}/long`, maxBodyBytes: 1024 })).toEqual({
      kind: 'too_large',
      status: 200,
    });
  });
});

describe('UndiciTransport failures: could WeChat have processed the request?', () => {
  it('not sent: the connection was refused', async () => {
    const { server, origin } = await listen(createTcpServer());
    await new Promise<void>((resolve) => server.close(() => resolve()));
    expectFailure(await open().send(classic(origin)), 'not_sent', 'ECONNREFUSED');
  });

  it('not sent: the TLS handshake did not finish within connectTimeoutMs', async () => {
    // A TCP server that never answers the TLS ClientHello: no HTTP request can have been sent.
    const { origin, received } = await rawServer(() => {});
    const outcome = await open({ connectTimeoutMs: 50 }).send(classic(origin.replace('http:', 'https:')));
    expectFailure(outcome, 'not_sent', 'UND_ERR_CONNECT_TIMEOUT');
    expect(received.join('')).not.toContain('GET ');
  });

  it('timeout: the request arrived and no answer came within timeoutMs', async () => {
    const { origin, received } = await rawServer(() => {});
    expectFailure(await open().send(classic(origin, { timeoutMs: 50 })), 'timeout');
    expect(received[0]).toMatch(/^GET \/cgi-bin\/token\?/);
  });

  it('timeout: the headers arrived and the body stalled', async () => {
    const { origin } = await rawServer((socket) =>
      socket.write('HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{"access_token":'),
    );
    expectFailure(await open().send(classic(origin, { timeoutMs: 50 })), 'timeout');
  });

  it('interrupted: the connection was reset after the request arrived', async () => {
    const { origin, received } = await rawServer((socket) => socket.resetAndDestroy());
    expectFailure(await open().send(classic(origin)), 'interrupted', 'ECONNRESET');
    expect(received).toHaveLength(1);
  });

  it('interrupted: the connection was closed without an answer', async () => {
    const { origin } = await rawServer((socket) => socket.end());
    expectFailure(await open().send(classic(origin)), 'interrupted', 'UND_ERR_SOCKET');
  });

  it('interrupted: the connection was reset halfway through the body', async () => {
    const { origin } = await rawServer((socket) =>
      socket.write('HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{"access_token":', () =>
        socket.resetAndDestroy(),
      ),
    );
    expectFailure(await open().send(classic(origin)), 'interrupted');
  });

  it('serves the next request on a new connection after a failed one', async () => {
    let calls = 0;
    const { origin } = await rawServer((socket) => {
      calls++;
      if (calls === 1) socket.resetAndDestroy();
      else socket.end('HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}');
    });
    const t = open();
    expectFailure(await t.send(classic(origin)), 'interrupted');
    expect(await t.send(classic(origin))).toEqual({ kind: 'response', status: 200, text: '{}' });
  });
});
