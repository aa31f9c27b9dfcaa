import { describe, expect, it } from 'vitest';
import { KetamaRing, ketamaHash } from '../../../lib/store/ketama.ts';

// Expected placements from the AWS ElastiCache cluster client for Java's own tests
// (awslabs/aws-elasticache-cluster-client-memcached-for-java, KetamaNodeLocatorTest): nodes named
// `ip:port`, as that client names a node whose address is an IP literal.
const FOUR = ['127.0.0.1:10000', '127.0.0.1:10001', '127.0.0.1:10002', '127.0.0.1:10003'];
const FIVE = [...FOUR, '127.0.0.1:10004'];
const EIGHT = Array.from({ length: 8 }, (_, i) => `10.0.1.${i + 1}:11211`);

describe('KetamaRing', () => {
  it('places keys as the Java cluster client does (4 nodes)', () => {
    const ring = new KetamaRing(FOUR);
    expect(ring.nodeFor('dustin')).toBe(FOUR[1]);
    expect(ring.nodeFor('noelani')).toBe(FOUR[2]);
    expect(ring.nodeFor('some other key')).toBe(FOUR[1]);
    expect(ring.nodeFor('V63F38Q5')).toBe(FOUR[0]);
    expect(ring.nodeFor('BBPS74BZ')).toBe(FOUR[0]);
  });

  it('wraps a key past the last point to the first point', () => {
    const ring = new KetamaRing(FOUR);
    for (const key of ['MJ7KVRNK', 'LBWDFQG2', 'GNZJD9D9']) expect(ring.nodeFor(key)).toBe(FOUR[3]);
  });

  it('moves only the keys the new node takes when a fifth node joins', () => {
    const ring = new KetamaRing(FIVE);
    expect(ring.nodeFor('V63F38Q5')).toBe(FIVE[0]);
    expect(ring.nodeFor('dustin')).toBe(FIVE[1]);
    expect(ring.nodeFor('noelani')).toBe(FIVE[2]);
    expect(ring.nodeFor('BBPS74BZ')).toBe(FIVE[4]);
    expect(ring.nodeFor('36')).toBe(FIVE[1]);
    expect(ring.nodeFor('10037')).toBe(FIVE[1]);
    expect(ring.nodeFor('22051')).toBe(FIVE[0]);
    expect(ring.nodeFor('49044')).toBe(FIVE[3]);
  });

  it('places keys as the Java cluster client does (8 nodes, its libketama-compatibility vectors)', () => {
    const ring = new KetamaRing(EIGHT);
    const expected: Array<[string, number]> = [
      ['137470', 3],
      ['137703', 8],
      ['137936', 2],
      ['138169', 4],
      ['139101', 6],
      ['140499', 7],
      ['140732', 5],
      ['142130', 1],
      ['152149', 1],
      ['205972', 2],
    ];
    for (const [key, node] of expected) expect(ring.nodeFor(key)).toBe(`10.0.1.${node}:11211`);
  });

  it('hashes a key to the first four bytes of its SHA-384, little-endian', () => {
    // SHA-384("") = 38b060a7…: bytes 38 b0 60 a7 read little-endian.
    expect(ketamaHash('')).toBe(0xa760b038);
  });

  it('moves about 1/N of the keys when a node leaves, and only keys of that node', () => {
    const names = ['a.cache:11211', 'b.cache:11211', 'c.cache:11211', 'd.cache:11211'];
    const before = new KetamaRing(names);
    const after = new KetamaRing(names.filter((n) => n !== 'c.cache:11211'));
    let moved = 0;
    for (let i = 0; i < 4000; i++) {
      const key = `wts:v1:lock:access_token:wx${i.toString(16).padStart(16, '0')}`;
      const was = before.nodeFor(key);
      if (was !== after.nodeFor(key)) {
        moved++;
        expect(was).toBe('c.cache:11211');
      }
    }
    expect(moved / 4000).toBeGreaterThan(0.15);
    expect(moved / 4000).toBeLessThan(0.35);
  });

  it('refuses an empty node list', () => {
    expect(() => new KetamaRing([])).toThrow(/1 to 65535 nodes/);
  });
});
