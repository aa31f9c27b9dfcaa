/**
 * Gives memjs (binary protocol) its sockets: TLS for node-based clusters with in-transit encryption,
 * or plain TCP with connection errors named by their cause.
 *
 * memjs 1.3.x opens its socket inside `Server.prototype.sock` with `net.connect` and has no option for
 * anything else. {@link useSocketFactory} replaces `sock` on one Server object with the same state
 * machine (connect → optional SASL → run the queued requests; a connect timeout; errors fail every
 * waiting request) around a socket from a factory. Two differences, both about failing instead of
 * waiting: the error a request fails with says what to fix (a TLS server behind plain TCP, an
 * untrusted certificate…), and a connection the server closes fails the requests still waiting on it
 * (memjs leaves them to its request timer).
 */
import type { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import { explainConnectionError, type NodeAddress, openSocket, type TlsSettings } from './connection.ts';

/** Opens the socket of a memjs server; `onReady` once it can carry requests (after a TLS handshake). */
export type MemjsSocketFactory = (onReady: () => void) => Socket;

/** The memjs 1.3.x Server internals `sock` works with. */
export interface MemjsServerInternals extends EventEmitter {
  _socket?: Socket;
  connected: boolean;
  timeoutSet: boolean;
  connectCallbacks: Array<(socket: Socket) => void>;
  errorCallbacks: Record<string, unknown>;
  options: { conntimeout: number; keepAlive: boolean; keepAliveDelay: number };
  username?: string;
  password?: string;
  responseHandler(data: Buffer): void;
  listSasl(): void;
  error(err: unknown): void;
  onConnect(go: (socket: Socket) => void): void;
  sock(sasl: boolean, go: (socket: Socket) => void): void;
}

/** A memjs connection failure, its message naming the cause; the original error is the `cause`. */
export class MemjsConnectionError extends Error {
  override readonly name = 'MemjsConnectionError';
}

/** The factory for one node: dials its IP when known, verifies TLS against its host name. */
export function nodeSocketFactory(node: NodeAddress, tls: TlsSettings | false): MemjsSocketFactory {
  return (onReady) => openSocket(node, tls, onReady);
}

/** Makes `server` open its connections with `factory` (see the header). `tls` only shapes messages. */
export function useSocketFactory(
  server: MemjsServerInternals,
  factory: MemjsSocketFactory,
  tls: boolean,
): void {
  server.sock = (sasl, go) => {
    const current = server._socket;
    if (current) {
      if (!server.connected && !sasl)
        server.onConnect(go); // still connecting or authenticating
      else go(current);
      return;
    }
    server.connected = false;
    let answered = false;
    const socket = factory(() => {
      server.once('authenticated', () => {
        if (server._socket !== socket) return;
        server.connected = true;
        socket.setTimeout(0);
        server.timeoutSet = false;
        go(socket);
        const waiting = server.connectCallbacks;
        server.connectCallbacks = [];
        for (const callback of waiting) callback(socket);
      });
      socket.on('data', (data: Buffer) => {
        answered = true;
        server.responseHandler(data);
      });
      if (server.username && server.password) server.listSasl();
      else server.emit('authenticated');
    });
    server._socket = socket;

    socket.on('error', (err) => {
      if (server._socket !== socket) return;
      server.error(new MemjsConnectionError(explainConnectionError(err, tls, answered), { cause: err }));
    });
    socket.on('close', () => {
      if (server._socket !== socket) return;
      server.connected = false;
      server._socket = undefined;
      if (server.timeoutSet) {
        socket.setTimeout(0);
        server.timeoutSet = false;
      }
      // Requests still waiting were sent on this socket: nothing will answer them now.
      if (Object.keys(server.errorCallbacks).length > 0) {
        server.error(
          new MemjsConnectionError(
            answered
              ? 'the server closed the connection'
              : tls
                ? 'the server closed the connection during the TLS handshake'
                : 'the server closed the connection before answering: if it requires TLS, set MEMCACHED_TLS=true',
          ),
        );
      }
    });
    server.timeoutSet = true;
    socket.setTimeout(server.options.conntimeout * 1000, () => {
      server.timeoutSet = false;
      if (server.connected || server._socket !== socket) return;
      socket.destroy();
      server._socket = undefined;
      server.error(new MemjsConnectionError('connecting to the server timed out'));
    });
    socket.setKeepAlive(server.options.keepAlive, server.options.keepAliveDelay * 1000);
  };
}
