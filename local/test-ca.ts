/**
 * A throwaway certificate authority made with `openssl` at run time, for tests and the benchmark
 * (keys live in a temporary folder and are never committed):
 * a CA, and server certificates it signed for loopback names, for memcached's TLS mode.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface ServerCertificate {
  certFile: string;
  keyFile: string;
}

export interface TestCa {
  /** The CA certificate (PEM file): what NODE_EXTRA_CA_CERTS points to in child instances. */
  caFile: string;
  /** The CA certificate, PEM text: what in-process stores get as `tls.ca`. */
  caPem: string;
  /** A server certificate signed by this CA for `names` (DNS names and IP literals). */
  issue(names: string[]): ServerCertificate;
  /** A self-signed certificate for `names`, which nothing trusts. */
  selfSigned(names: string[]): ServerCertificate;
  /** Deletes every file. */
  remove(): void;
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: 'pipe' });
}

function altNames(names: string[]): string {
  return names.map((n) => (/^[0-9.]+$|:/.test(n) ? `IP:${n}` : `DNS:${n}`)).join(',');
}

export function createTestCa(): TestCa {
  const dir = mkdtempSync(join(tmpdir(), 'wts-test-ca-'));
  openssl(
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-keyout',
      'ca.key',
      '-out',
      'ca.pem',
      '-days',
      '2',
      '-subj',
      '/CN=wts test CA',
    ],
    dir,
  );
  let serial = 0;
  const keyArgs = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  return {
    caFile: join(dir, 'ca.pem'),
    caPem: readFileSync(join(dir, 'ca.pem'), 'utf8'),
    issue(names) {
      const name = `server-${++serial}`;
      writeFileSync(join(dir, `${name}.ext`), `subjectAltName=${altNames(names)}\n`);
      openssl(
        ['req', ...keyArgs, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${names[0]}`],
        dir,
      );
      openssl(
        [
          'x509',
          '-req',
          '-in',
          `${name}.csr`,
          '-CA',
          'ca.pem',
          '-CAkey',
          'ca.key',
          '-set_serial',
          String(1000 + serial),
          '-days',
          '2',
          '-extfile',
          `${name}.ext`,
          '-out',
          `${name}.pem`,
        ],
        dir,
      );
      return { certFile: join(dir, `${name}.pem`), keyFile: join(dir, `${name}.key`) };
    },
    selfSigned(names) {
      const name = `self-${++serial}`;
      openssl(
        [
          'req',
          '-x509',
          ...keyArgs,
          '-keyout',
          `${name}.key`,
          '-out',
          `${name}.pem`,
          '-days',
          '2',
          '-subj',
          `/CN=${names[0]}`,
          '-addext',
          `subjectAltName=${altNames(names)}`,
        ],
        dir,
      );
      return { certFile: join(dir, `${name}.pem`), keyFile: join(dir, `${name}.key`) };
    },
    remove() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
