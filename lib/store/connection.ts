/**
 * How every Memcached connection of the service is opened — plain TCP or TLS — and what a failed
 * connection is called in an error message. Shared by the text-protocol adapter, the memjs socket
 * factory and Auto Discovery, so that one misconfiguration reads the same whatever protocol is used.
 *
 * Messages never name the host (they can reach unauthenticated callers through error bodies); they
 * name the cause and the variable to change.
 */
import { isIP, connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';

/** One Memcached server: the name it is known by, and the address to dial. */
export interface NodeAddress {
  /** Host name (or IP literal) from the configuration: TLS verifies the certificate against it. */
  host: string;
  port: number;
  /** IP to dial instead of resolving `host` (Auto Discovery gives one); null → resolve `host`. */
  ip: string | null;
}

/**
 * TLS settings. Production passes `{}`: the server certificate is verified against Node's trust
 * store (its bundled Mozilla CA list, which holds the Amazon roots ElastiCache chains to, plus any
 * NODE_EXTRA_CA_CERTS), with SNI set to the host name. Tests pass their own CA.
 */
export interface TlsSettings {
  /** Trusted CAs in PEM, replacing Node's default list (tests only). */
  ca?: string | string[];
}

/** `host:port` (IPv6 hosts in brackets), as MEMCACHED_SERVERS writes it. */
export function parseHostPort(entry: string): { host: string; port: number } {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(entry);
  const port = Number(match?.[3]);
  if (!match || !Number.isInteger(port) || port < 1 || port > 65_535) {
    throw new Error(`"${entry.slice(0, 80)}" is not host:port`);
  }
  return { host: (match[1] ?? match[2]) as string, port };
}

/** The name a node goes by in keys, logs and the ketama continuum: `host:port`. */
export function nodeName(node: { host: string; port: number }): string {
  return isIP(node.host) === 6 ? `[${node.host}]:${node.port}` : `${node.host}:${node.port}`;
}

/**
 * Opens a socket to `node`: TLS when `tls` is given (SNI = the host name unless it is an IP literal,
 * which RFC 6066 forbids as a server name; the certificate is checked against the host either way).
 * `onReady` runs once the connection can carry requests (after the TLS handshake).
 */
export function openSocket(node: NodeAddress, tls: TlsSettings | false, onReady: () => void): Socket {
  const dial = node.ip ?? node.host;
  if (tls === false) {
    return netConnect({ host: dial, port: node.port }, onReady);
  }
  const socket = tlsConnect(
    {
      host: dial,
      port: node.port,
      // Node verifies the certificate against `servername` when set, else against the address dialled:
      // so a node dialled by its IP is still checked against its name.
      ...(isIP(node.host) === 0 ? { servername: node.host } : {}),
      ...(tls.ca !== undefined ? { ca: tls.ca } : {}),
    },
    onReady,
  );
  return socket;
}

const UNTRUSTED = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_UNTRUSTED',
  'CERT_SIGNATURE_FAILURE',
  'CERT_REJECTED',
]);
const NOT_TLS = new Set([
  'ERR_SSL_WRONG_VERSION_NUMBER',
  'ERR_SSL_PACKET_LENGTH_TOO_LONG',
  'ERR_SSL_HTTP_REQUEST',
  'ERR_SSL_RECORD_LAYER_FAILURE',
]);
/** Connect errors after which a node is certainly not serving at that address. */
const UNREACHABLE = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND']);

/**
 * An error's Node code (system and TLS errors carry one: `ECONNREFUSED`, `ERR_TLS_…`), looking
 * through `cause` — past the service's own errors, whose `code` is one of the catalogue's.
 */
export function errorCode(err: unknown): string | undefined {
  for (let e = err, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    const code = (e as NodeJS.ErrnoException).code;
    if (typeof code === 'string' && /^[A-Z][A-Z0-9_]+$/.test(code)) return code;
  }
  return undefined;
}

/** Whether `err` says nothing is serving at the node's address (refused, unreachable, no such host). */
export function isUnreachable(err: unknown): boolean {
  const code = errorCode(err);
  return code !== undefined && UNREACHABLE.has(code);
}

/**
 * What went wrong with a connection, in words that say what to fix. `answered`: whether the server had
 * sent anything on this connection (a reset before any answer is how a TLS server treats plain text).
 */
export function explainConnectionError(err: unknown, tls: boolean, answered: boolean): string {
  const code = errorCode(err);
  if (code !== undefined) {
    if (UNTRUSTED.has(code)) {
      // Kept under 200 characters: the memjs adapter cuts messages there.
      return (
        `TLS: the server certificate is not trusted (${code}); Node trusts the Amazon roots ElastiCache ` +
        'uses: check MEMCACHED_SERVERS, or add a private CA with NODE_EXTRA_CA_CERTS'
      );
    }
    if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
      return (
        'TLS: the server certificate does not name the host this service connected to ' +
        '(ERR_TLS_CERT_ALTNAME_INVALID): use the endpoint name ElastiCache gives in MEMCACHED_SERVERS'
      );
    }
    if (code === 'CERT_HAS_EXPIRED' || code === 'CERT_NOT_YET_VALID') {
      return `TLS: the server certificate is outside its validity period (${code})`;
    }
    if (tls && (NOT_TLS.has(code) || (code === 'EPROTO' && !answered))) {
      return (
        `TLS: the server did not answer the TLS handshake with TLS (${code}): it speaks plain TCP; ` +
        'set MEMCACHED_TLS=false, or check the port'
      );
    }
    if (code === 'ECONNRESET' && !answered) {
      return tls
        ? 'the server reset the connection during the TLS handshake (ECONNRESET)'
        : 'the server reset the connection before answering (ECONNRESET): if it requires TLS ' +
            '(ElastiCache Serverless, or in-transit encryption), set MEMCACHED_TLS=true';
    }
    if (code === 'ECONNREFUSED') {
      return 'connection refused (ECONNREFUSED): nothing listens at that address; check MEMCACHED_SERVERS and the port';
    }
    if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') {
      return `the host name does not resolve (${code}): check MEMCACHED_SERVERS`;
    }
    if (code === 'EHOSTUNREACH' || code === 'ENETUNREACH') {
      return `the node is unreachable (${code}): check the subnets' routes and security groups`;
    }
  }
  const text = err instanceof Error ? err.message : String(err);
  // Node's own texts can quote host names (certificate alt names, addresses): keep the code only.
  return code !== undefined ? `connection failed (${code})` : text.slice(0, 200);
}
