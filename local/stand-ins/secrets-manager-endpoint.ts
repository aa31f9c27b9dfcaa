/**
 * A local stand-in for the AWS Secrets Manager API, good enough for the real
 * `@aws-sdk/client-secrets-manager` client to call `GetSecretValue` against it.
 *
 * Point the SDK at it with the environment returned by {@link LocalSecretsManager.env}
 * (`AWS_ENDPOINT_URL_SECRETS_MANAGER`, `AWS_REGION` and dummy credentials); production code
 * needs no test hook. Only node built-ins are used.
 *
 * @module
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

/** How {@link LocalSecretsManager.failNext} makes a request fail. */
export type LocalSecretsManagerFailure = 'throttle' | 'internal' | 'reset';

/** A running local Secrets Manager endpoint. */
export interface LocalSecretsManager {
  /** Base URL of the endpoint, `http://127.0.0.1:PORT`. */
  endpoint: string;
  /** Region the endpoint pretends to be in (appears in ARNs); `us-east-1` unless given. */
  region: string;
  /**
   * Environment variables that make the real SDK client use this endpoint:
   * `AWS_ENDPOINT_URL_SECRETS_MANAGER`, `AWS_REGION`, `AWS_ACCESS_KEY_ID` and
   * `AWS_SECRET_ACCESS_KEY` (dummy values). Merge them into a child process env or `process.env`.
   */
  env(): Record<string, string>;
  /**
   * Creates the secret `id` (a name) with `value` as its SecretString, or rotates it if it exists:
   * every call creates a new version (new VersionId and CreatedDate; the ARN stays the same).
   */
  putSecret(id: string, value: string): void;
  /** Deletes the secret `id` (its name or ARN); later reads get ResourceNotFoundException. */
  deleteSecret(id: string): void;
  /**
   * Live request counters. `getSecretValue` counts every GetSecretValue request received,
   * including unknown ids and requests failed on purpose by {@link LocalSecretsManager.failNext},
   * so SDK retries show up as extra calls.
   */
  calls: { getSecretValue: number };
  /**
   * GetSecretValue requests per secret, by the id the caller sent (a name or an ARN), unknown ids
   * included; requests failed on purpose by {@link LocalSecretsManager.failNext} are not attributed.
   */
  readsOf(id: string): number;
  /** Every secret id GetSecretValue was asked for, with its count. */
  reads(): ReadonlyMap<string, number>;
  /** Sets every counter in {@link LocalSecretsManager.calls} back to 0. */
  resetCounters(): void;
  /**
   * Makes the next `n` requests fail (replacing any failures still pending; `0` cancels them):
   * `throttle` answers 400 ThrottlingException, `internal` (the default) answers 500
   * InternalServiceError, `reset` destroys the socket without an answer.
   */
  failNext(n: number, kind?: LocalSecretsManagerFailure): void;
  /**
   * Makes every request fail, as in an outage, until {@link LocalSecretsManager.failNext} is called
   * (`failNext(0)` ends it).
   */
  failAll(kind?: LocalSecretsManagerFailure): void;
  /** Stops the server and destroys every open (keep-alive) connection; safe to call twice. */
  close(): Promise<void>;
}

interface SecretVersion {
  name: string;
  arn: string;
  value: string;
  versionId: string;
  createdDate: number;
}

const JSON_CONTENT_TYPE = 'application/x-amz-json-1.1';
const TARGET_PREFIX = 'secretsmanager.';
const ACCOUNT_ID = '000000000000';

/**
 * Starts a local Secrets Manager endpoint on `127.0.0.1` (a free port chosen by the OS).
 *
 * @param options.region - region to report (default `us-east-1`)
 * @param options.secrets - initial secrets, name → SecretString
 * @returns the running endpoint; call {@link LocalSecretsManager.close} when done
 */
export async function startLocalSecretsManager(
  options: { region?: string; secrets?: Record<string, string> } = {},
): Promise<LocalSecretsManager> {
  const region = options.region ?? 'us-east-1';
  const secrets = new Map<string, SecretVersion>();
  const sockets = new Set<Socket>();
  const calls = { getSecretValue: 0 };
  const bySecret = new Map<string, number>();
  let pendingFailures = 0;
  let failureKind: LocalSecretsManagerFailure = 'internal';

  const findSecret = (id: string): SecretVersion | undefined => {
    const byName = secrets.get(id);
    if (byName) return byName;
    for (const secret of secrets.values()) {
      if (secret.arn === id) return secret;
    }
    return undefined;
  };

  const putSecret = (id: string, value: string): void => {
    const existing = findSecret(id);
    const name = existing?.name ?? id;
    const arn =
      existing?.arn ??
      `arn:aws:secretsmanager:${region}:${ACCOUNT_ID}:secret:${name}-${randomBytes(3).toString('hex')}`;
    secrets.set(name, { name, arn, value, versionId: randomUUID(), createdDate: Date.now() / 1000 });
  };

  for (const [name, value] of Object.entries(options.secrets ?? {})) putSecret(name, value);

  const send = (res: ServerResponse, status: number, body: unknown): void => {
    const payload = JSON.stringify(body);
    res.writeHead(status, {
      'content-type': JSON_CONTENT_TYPE,
      'content-length': Buffer.byteLength(payload),
      'x-amzn-requestid': randomUUID(),
    });
    res.end(payload);
  };

  const invalidRequest = (res: ServerResponse, message: string): void =>
    send(res, 400, { __type: 'InvalidRequestException', message });

  const handle = (req: IncomingMessage, res: ServerResponse, rawBody: string): void => {
    const target = req.headers['x-amz-target'];
    const operation =
      typeof target === 'string' && target.startsWith(TARGET_PREFIX)
        ? target.slice(TARGET_PREFIX.length)
        : '';
    if (operation === 'GetSecretValue') calls.getSecretValue += 1;

    if (pendingFailures > 0) {
      pendingFailures -= 1;
      if (failureKind === 'reset') {
        req.socket.destroy();
      } else if (failureKind === 'throttle') {
        send(res, 400, { __type: 'ThrottlingException', message: 'Rate exceeded' });
      } else {
        send(res, 500, { __type: 'InternalServiceError', message: 'An error occurred on the server side.' });
      }
      return;
    }

    if (req.method !== 'POST' || operation !== 'GetSecretValue') {
      invalidRequest(
        res,
        `Unsupported request: ${req.method ?? '?'} ${String(target ?? '(no X-Amz-Target)')}`,
      );
      return;
    }
    let secretId: unknown;
    try {
      secretId = (JSON.parse(rawBody) as { SecretId?: unknown } | null)?.SecretId;
    } catch {
      invalidRequest(res, 'The request body is not valid JSON.');
      return;
    }
    if (typeof secretId !== 'string' || secretId === '') {
      invalidRequest(res, 'SecretId is required.');
      return;
    }
    bySecret.set(secretId, (bySecret.get(secretId) ?? 0) + 1);
    const secret = findSecret(secretId);
    if (!secret) {
      send(res, 400, {
        __type: 'ResourceNotFoundException',
        message: "Secrets Manager can't find the specified secret.",
      });
      return;
    }
    send(res, 200, {
      ARN: secret.arn,
      Name: secret.name,
      SecretString: secret.value,
      VersionId: secret.versionId,
      VersionStages: ['AWSCURRENT'],
      CreatedDate: secret.createdDate,
    });
  };

  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => handle(req, res, Buffer.concat(chunks).toString('utf8')));
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  const endpoint = `http://127.0.0.1:${port}`;
  let closing: Promise<void> | undefined;

  return {
    endpoint,
    region,
    env: () => ({
      AWS_ENDPOINT_URL_SECRETS_MANAGER: endpoint,
      AWS_REGION: region,
      AWS_ACCESS_KEY_ID: 'local-test-access-key',
      AWS_SECRET_ACCESS_KEY: 'local-test-secret-key',
    }),
    putSecret,
    deleteSecret: (id) => {
      const secret = findSecret(id);
      if (secret) secrets.delete(secret.name);
    },
    calls,
    readsOf: (id) => bySecret.get(id) ?? 0,
    reads: () => bySecret,
    resetCounters: () => {
      calls.getSecretValue = 0;
      bySecret.clear();
    },
    failNext: (n, kind = 'internal') => {
      pendingFailures = Math.max(0, Math.floor(n));
      failureKind = kind;
    },
    failAll: (kind = 'internal') => {
      pendingFailures = Number.POSITIVE_INFINITY;
      failureKind = kind;
    },
    close: () => {
      closing ??= new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()));
        for (const socket of sockets) socket.destroy();
        server.closeAllConnections();
      });
      return closing;
    },
  };
}
