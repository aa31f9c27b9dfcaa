/**
 * A local stand-in for an ElastiCache configuration endpoint: answers `config get cluster` the way
 * ElastiCache does (`CONFIG cluster 0 <bytes>\r\n<version>\n<host|ip|port …>\n\r\nEND\r\n`), with a
 * node list the test changes, over plain TCP or TLS, on a loopback port. Anything else is `ERROR`.
 */
import { readFileSync } from 'node:fs';
import { type AddressInfo, createServer as createNetServer, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';

export interface ConfigNode {
  host: string;
  ip: string;
  port: number;
}

export interface LocalConfigEndpoint {
  /** `127.0.0.1:<port>`. */
  address: string;
  port: number;
  /** `config get cluster` requests answered so far. */
  readonly requests: number;
  /** Sets the node list; the version grows by one, as ElastiCache's does at every change. */
  setNodes(nodes: ConfigNode[]): void;
  /** Answers the next requests with these bytes instead (a malformed answer), or normally again with null. */
  setRawAnswer(raw: string | null): void;
  close(): Promise<void>;
}

export async function startConfigEndpoint(
  nodes: ConfigNode[],
  options: { tls?: { certFile: string; keyFile: string } } = {},
): Promise<LocalConfigEndpoint> {
  let version = 1;
  let current = nodes;
  let raw: string | null = null;
  let requests = 0;
  const sockets = new Set<Socket>();

  const answer = () => {
    if (raw !== null) return raw;
    const data = `${version}\n${current.map((n) => `${n.host}|${n.ip}|${n.port}`).join(' ')}\n`;
    return `CONFIG cluster 0 ${Buffer.byteLength(data)}\r\n${data}\r\nEND\r\n`;
  };
  const serve = (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    let buffer = '';
    socket.on('data', (chunk: Buffer) => {
      buffer += chunk.toString('latin1');
      for (let end = buffer.indexOf('\r\n'); end >= 0; end = buffer.indexOf('\r\n')) {
        const line = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        if (line === 'config get cluster') {
          requests++;
          socket.write(answer());
        } else if (line === 'version') socket.write('VERSION 1.6.6\r\n');
        else socket.write('ERROR\r\n');
      }
    });
  };
  const server: Server = options.tls
    ? createTlsServer(
        { cert: readFileSync(options.tls.certFile), key: readFileSync(options.tls.keyFile) },
        serve,
      )
    : createNetServer(serve);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    address: `127.0.0.1:${port}`,
    port,
    get requests() {
      return requests;
    },
    setNodes(next) {
      current = next;
      version++;
    },
    setRawAnswer(next) {
      raw = next;
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
