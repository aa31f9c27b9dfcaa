/**
 * Ketama consistent hashing, built as the AWS ElastiCache cluster client for Java builds it
 * (spymemcached's `KetamaNodeLocator` with `DefaultHashAlgorithm.KETAMA_HASH`):
 *
 * - each node gets 160 points on a 32-bit circle: for i in 0..39, the digest of `<node name>-<i>`
 *   (UTF-8) gives its first 16 bytes as four little-endian unsigned 32-bit numbers;
 * - a key's position is the first four bytes of the digest of the key, little-endian;
 * - the key belongs to the node of the first point at or after its position, wrapping to the first
 *   point; when two nodes draw the same point, the later node in the list keeps it.
 *
 * The digest is SHA-384: the AWS client moved KETAMA_HASH from MD5 to SHA-384 in 2022 ("to be more
 * collision resilient", commit 5fac5b3 of awslabs/aws-elasticache-cluster-client-memcached-for-java),
 * and its test vectors are SHA-384 ones. Clients built on libketama (MD5) place keys differently; it
 * matters only if another client shares this service's keys, which nothing should.
 *
 * So every instance that sees the same node list maps a key to the same node, and adding or removing
 * one node moves only the keys of the arcs it gains or loses (about 1/N of them).
 *
 * Node names: the Java client names a node `ip:port` when the configuration gives an IP, the
 * libmemcached-based clients by host name; clients do not agree. This service names a node
 * `host:port` (see `nodeName`): ElastiCache keeps a node's host name when it replaces the node, the IP
 * may change, and a name that survives replacement keeps the node's share of keys where it was. With
 * IP literals as names the continuum is exactly the Java client's (test/unit/store/ketama.test.ts).
 */
import { createHash } from 'node:crypto';

/** Points per node: 40 digests × 4 (spymemcached's `DefaultKetamaNodeLocatorConfiguration`). */
const POINTS_PER_NODE = 160;

/** A key's position on the circle: the first four bytes of SHA-384(key), little-endian. */
export function ketamaHash(key: string): number {
  return createHash('sha384').update(key, 'utf8').digest().readUInt32LE(0);
}

/** The continuum of a node list. Immutable: a new node list builds a new ring. */
export class KetamaRing {
  /** Point positions, ascending. */
  readonly #points: Uint32Array;
  /** Index into `names` of the node owning each point. */
  readonly #owners: Uint16Array;
  readonly #names: readonly string[];

  /** @param names - node names in the order the configuration lists them (at least one, at most 65 535) */
  constructor(names: readonly string[]) {
    if (names.length === 0 || names.length > 0xffff)
      throw new Error(`a ring needs 1 to 65535 nodes, not ${names.length}`);
    this.#names = [...names];
    const owner = new Map<number, number>();
    names.forEach((name, index) => {
      for (let i = 0; i < POINTS_PER_NODE / 4; i++) {
        const digest = createHash('sha384').update(`${name}-${i}`, 'utf8').digest();
        for (let h = 0; h < 4; h++) owner.set(digest.readUInt32LE(h * 4), index);
      }
    });
    this.#points = Uint32Array.from([...owner.keys()].sort((a, b) => a - b));
    this.#owners = Uint16Array.from(this.#points, (point) => owner.get(point) as number);
  }

  /** The names the ring was built from, in their order. */
  get names(): readonly string[] {
    return this.#names;
  }

  /** The name of the node owning `key`. */
  nodeFor(key: string): string {
    const position = ketamaHash(key);
    // First point at or after the position (binary search), wrapping to the first point.
    let low = 0;
    let high = this.#points.length;
    while (low < high) {
      const mid = (low + high) >>> 1;
      if ((this.#points[mid] as number) < position) low = mid + 1;
      else high = mid;
    }
    const at = low === this.#points.length ? 0 : low;
    return this.#names[this.#owners[at] as number] as string;
  }
}
