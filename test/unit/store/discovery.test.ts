import { afterEach, describe, expect, it } from 'vitest';
import { ConfigEndpoint, parseClusterConfig } from '../../../lib/store/discovery.ts';
import { type LocalConfigEndpoint, startConfigEndpoint } from '../../support/config-endpoint.ts';
import { failure } from '../../support/failure.ts';

const data = (text: string) => Buffer.from(text, 'latin1');

describe('parseClusterConfig', () => {
  it('reads the version and the host|ip|port entries of ElastiCache’s answer', () => {
    const config = parseClusterConfig(
      data(
        '12\nmycluster.fnjyzo.0001.use1.cache.amazonaws.com|10.82.235.120|11211 ' +
          'mycluster.fnjyzo.0002.use1.cache.amazonaws.com|10.80.249.27|11211\n',
      ),
    );
    expect(config).toEqual({
      version: 12,
      nodes: [
        { host: 'mycluster.fnjyzo.0001.use1.cache.amazonaws.com', ip: '10.82.235.120', port: 11211 },
        { host: 'mycluster.fnjyzo.0002.use1.cache.amazonaws.com', ip: '10.80.249.27', port: 11211 },
      ],
    });
  });

  it('takes an empty IP field as "resolve the host name", and an IPv6 address', () => {
    expect(parseClusterConfig(data('1\nnode.example|fd00::5|11212 other.example||11211')).nodes).toEqual([
      { host: 'node.example', ip: 'fd00::5', port: 11212 },
      { host: 'other.example', ip: null, port: 11211 },
    ]);
  });

  it.each([
    ['no node line', '12\n', /1 lines, not 2/],
    ['an extra line', '12\na|10.0.0.1|11211\nmore\n', /3 lines/],
    ['a version that is not a number', 'v12\na|10.0.0.1|11211\n', /version line/],
    ['an empty node line', '12\n\n', /empty/],
    ['two spaces between entries', '12\na|10.0.0.1|11211  b|10.0.0.2|11211\n', /empty entries/],
    ['an entry without its port', '12\na|10.0.0.1\n', /entry 1 is not host\|ip\|port/],
    ['a host name with a space-like byte', '12\na_b|10.0.0.1|11211\n', /entry 1 has an invalid host name/],
    ['a bad IP', '12\na|10.0.0.300|11211\n', /invalid IP/],
    ['port 0', '12\na|10.0.0.1|0\n', /invalid port/],
    ['port 70000', '12\na|10.0.0.1|70000\n', /invalid port/],
    ['a repeated node', '12\na|10.0.0.1|11211 A|10.0.0.1|11211\n', /entry 2 repeats a node/],
    ['a control byte', '12\na|10.0.0.1|11211\u0000\n', /not printable/],
  ])('rejects an answer with %s', (_what, text, message) => {
    expect(() => parseClusterConfig(data(text))).toThrow(message);
  });

  it('never quotes host names in its errors', () => {
    expect(() => parseClusterConfig(data('1\nsecret-name.internal|10.0.0.1|x\n'))).toThrow(
      expect.objectContaining({ message: expect.not.stringContaining('secret-name') }),
    );
  });
});

describe('ConfigEndpoint against a local configuration endpoint', () => {
  let endpoint: LocalConfigEndpoint | undefined;
  afterEach(async () => {
    await endpoint?.close();
  });

  const client = (port: number) =>
    new ConfigEndpoint({ endpoint: { host: '127.0.0.1', port, ip: null }, tls: false, timeoutMs: 500 });

  it('asks `config get cluster` and sees the version grow when the list changes', async () => {
    endpoint = await startConfigEndpoint([{ host: 'n1.local', ip: '127.0.0.2', port: 11211 }]);
    const c = client(endpoint.port);
    expect(await c.fetch()).toEqual({
      version: 1,
      nodes: [{ host: 'n1.local', ip: '127.0.0.2', port: 11211 }],
    });
    endpoint.setNodes([
      { host: 'n1.local', ip: '127.0.0.2', port: 11211 },
      { host: 'n2.local', ip: '127.0.0.3', port: 11211 },
    ]);
    expect((await c.fetch()).version).toBe(2);
    c.close();
  });

  it('fails with cache_unavailable naming the problem when the answer is malformed, and recovers', async () => {
    endpoint = await startConfigEndpoint([{ host: 'n1.local', ip: '127.0.0.2', port: 11211 }]);
    const c = client(endpoint.port);
    endpoint.setRawAnswer('CONFIG cluster 0 5\r\nabcde\r\nEND\r\n');
    const err = await failure(c.fetch());
    expect(err.code).toBe('cache_unavailable');
    expect(err.message).toMatch(/answer is malformed: the node list has 1 lines/);
    endpoint.setRawAnswer('CONFIG cluster 0 99\r\n1\nshort\r\nEND\r\n');
    expect((await failure(c.fetch())).message).toMatch(/Auto Discovery failed: no answer within 500 ms/);
    endpoint.setRawAnswer(null);
    expect((await c.fetch()).nodes).toHaveLength(1);
    c.close();
  });

  it('fails with config_invalid when the endpoint is a plain memcached that does not know the command', async () => {
    endpoint = await startConfigEndpoint([]);
    endpoint.setRawAnswer('ERROR\r\n');
    const err = await failure(client(endpoint.port).fetch());
    expect(err.code).toBe('config_invalid');
    expect(err.message).toMatch(/MEMCACHED_AUTO_DISCOVERY=false/);
  });
});
