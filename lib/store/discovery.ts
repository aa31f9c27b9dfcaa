/**
 * ElastiCache Auto Discovery: the node list of a node-based Memcached cluster, read from its
 * configuration endpoint (`<name>.cfg.<region>.cache.amazonaws.com`, a DNS alias of one node).
 *
 * The command is ElastiCache's text-protocol extension `config get cluster` (engines 1.4.14 and
 * later). Its answer:
 *
 *   CONFIG cluster 0 <bytes>\r\n
 *   <version>\n
 *   <host>|<ip>|<port> <host>|<ip>|<port> …\n
 *   \r\n
 *   END\r\n
 *
 * where `<bytes>` counts the two data lines and the version grows by one at every change of the list.
 * The answer is checked strictly: anything else is an error that says what was wrong, and the last
 * good list stays in use (see cluster.ts and node-lists.ts).
 */
import { isIP } from 'node:net';
import { ServiceError } from '../errors.ts';
import { CallTimeoutError, withTimeout } from './call-guard.ts';
import type { NodeAddress, TlsSettings } from './connection.ts';
import { CONNECT_ALLOWANCE_MS } from './memcached-text.ts';
import { ConnectionFailure, ServerErrorReply, TextConnection } from './text-connection.ts';

/** One node-list answer. */
export interface ClusterConfig {
  /** The configuration version: grows at every change of the list. */
  version: number;
  /** The nodes, in the order the endpoint lists them. */
  nodes: NodeAddress[];
}

/** A cluster has at most a few dozen nodes (ElastiCache's quota is 60 per cluster by default). */
const MAX_NODES = 256;
const HOST_PATTERN =
  /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

/**
 * Parses the data of a `CONFIG cluster` block (the version line and the node line). Throws an Error
 * whose message says what is wrong; the message never quotes the data (it holds host names).
 */
export function parseClusterConfig(data: Buffer): ClusterConfig {
  const text = data.toString('latin1');
  if (!/^[\x20-\x7e\r\n]*$/.test(text))
    throw new Error('the node list holds bytes that are not printable ASCII');
  // The data is "<version>\n<nodes>\n"; tolerate CRLF line ends and a missing final newline.
  const lines = text.split(/\r?\n/);
  if (lines[lines.length - 1] === '') lines.pop();
  if (lines.length !== 2) throw new Error(`the node list has ${lines.length} lines, not 2 (version, nodes)`);
  const [versionLine, nodeLine] = lines as [string, string];
  if (!/^(0|[1-9][0-9]{0,14})$/.test(versionLine)) throw new Error('the version line is not a whole number');
  const entries = nodeLine.split(' ');
  if (nodeLine === '' || entries.some((e) => e === '')) {
    throw new Error('the node line is empty or has empty entries');
  }
  if (entries.length > MAX_NODES) throw new Error(`the node list has more than ${MAX_NODES} nodes`);
  const seen = new Set<string>();
  const nodes = entries.map((entry, index) => {
    const fields = entry.split('|');
    const [host, ip, port] = fields;
    const where = `entry ${index + 1}`;
    if (fields.length !== 3 || host === undefined || ip === undefined || port === undefined) {
      throw new Error(`${where} is not host|ip|port`);
    }
    if (!HOST_PATTERN.test(host)) throw new Error(`${where} has an invalid host name`);
    if (ip !== '' && isIP(ip) === 0) throw new Error(`${where} has an invalid IP address`);
    if (!/^[1-9][0-9]{0,4}$/.test(port) || Number(port) > 65_535)
      throw new Error(`${where} has an invalid port`);
    const key = `${host.toLowerCase()}:${port}`;
    if (seen.has(key)) throw new Error(`${where} repeats a node`);
    seen.add(key);
    return { host, ip: ip === '' ? null : ip, port: Number(port) };
  });
  return { version: Number(versionLine), nodes };
}

/** The configuration endpoint's address, TLS settings and timeout. */
export interface ConfigEndpointOptions {
  endpoint: NodeAddress;
  tls: TlsSettings | false;
  timeoutMs: number;
  /** Extra time when the question needs a new connection (see `TextMemcachedStoreOptions`). */
  connectAllowanceMs?: number;
}

/** The configuration endpoint of a cluster: asks it for the node list. */
export class ConfigEndpoint {
  readonly #options: ConfigEndpointOptions;
  #connection: TextConnection | undefined;

  constructor(options: ConfigEndpointOptions) {
    this.#options = options;
  }

  /**
   * The current node list. Throws `cache_unavailable` when the endpoint cannot be asked, and
   * `config_invalid` when it answers but is not an ElastiCache configuration endpoint.
   */
  async fetch(): Promise<ClusterConfig> {
    // A fresh connection each time after a failure: the endpoint's DNS alias moves to another node
    // when its node is replaced, and a new connection resolves it again.
    this.#connection ??= new TextConnection({
      node: this.#options.endpoint,
      tls: this.#options.tls,
      staleAfterMs: this.#options.timeoutMs,
    });
    const connection = this.#connection;
    const allowanceMs = connection.established
      ? 0
      : (this.#options.connectAllowanceMs ?? CONNECT_ALLOWANCE_MS);
    try {
      const reply = await withTimeout(
        () => connection.request('config get cluster\r\n', 'config'),
        this.#options.timeoutMs + allowanceMs,
        { onTimeout: () => connection.discard('no answer to config get cluster') },
      );
      if (reply.shape !== 'config') throw new ConnectionFailure('a config reply was expected');
      const [block, ...more] = reply.blocks;
      if (!block || more.length > 0 || block.key !== 'cluster') {
        throw new ServiceError(
          'config_invalid',
          'Memcached Auto Discovery: the configuration endpoint answered `config get cluster` without exactly one cluster block',
        );
      }
      try {
        return parseClusterConfig(block.data);
      } catch (err) {
        throw new ServiceError(
          'cache_unavailable',
          `Memcached Auto Discovery: the configuration endpoint's answer is malformed: ${(err as Error).message}`,
          { cause: err },
        );
      }
    } catch (err) {
      if (err instanceof ServiceError) throw err;
      if (this.#connection === connection) {
        connection.close();
        this.#connection = undefined;
      }
      if (err instanceof ServerErrorReply && err.line === 'ERROR') {
        throw new ServiceError(
          'config_invalid',
          'Memcached Auto Discovery: the endpoint does not know `config get cluster`, so it is not an ElastiCache ' +
            'configuration endpoint: set MEMCACHED_AUTO_DISCOVERY=false to use it as a single node, or give the ' +
            'cluster’s configuration endpoint (…cfg…) in MEMCACHED_SERVERS',
          { cause: err },
        );
      }
      const why =
        err instanceof CallTimeoutError || err instanceof ConnectionFailure || err instanceof ServerErrorReply
          ? err.message
          : String(err).slice(0, 200);
      throw new ServiceError('cache_unavailable', `Memcached Auto Discovery failed: ${why}`, { cause: err });
    }
  }

  close(): void {
    this.#connection?.close();
    this.#connection = undefined;
  }
}
