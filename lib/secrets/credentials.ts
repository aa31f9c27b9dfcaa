import { createHash, timingSafeEqual } from 'node:crypto';
import {
  APPID_PATTERN,
  type AppConfig,
  type AppWithSecret,
  type ClientKey,
  type Credentials,
  type TicketType,
} from '../domain.ts';
import { ServiceError } from '../errors.ts';
import type { SecretSource } from '../ports.ts';

const SECRET_FORMS =
  'expected {"appid":"wx…","secret":"…"} or {"apps":[{"appid":"wx…","secret":"…","token_api":"classic"|"stable",' +
  '"tickets":["jsapi"]}],"clients":[{"id":"…","key_sha256":"<64 hex>","appids":["wx…"]}]}';

/** How the list is read: whether app entries may leave their AppSecret to a secret of their own. */
export interface ParseOptions {
  /** WECHAT_SECRET_PREFIX: set → an entry without `secret` is valid (its secret is prefix + appid). */
  secretPrefix?: string | undefined;
}

/**
 * Parses the credentials secret (both forms of the design). Errors are `config_invalid`, name the
 * offending entry by index or appid, and never quote a secret value.
 */
export function parseCredentials(text: string, options: ParseOptions = {}): Credentials {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw bad(`the credentials secret is not JSON; ${SECRET_FORMS}`);
  }
  if (!isObject(raw)) throw bad(`the credentials secret is not a JSON object; ${SECRET_FORMS}`);

  const appEntries: unknown[] = 'apps' in raw ? asArray(raw.apps, 'apps') : [raw];
  const apps = new Map<string, AppConfig>();
  appEntries.forEach((entry, index) => {
    const app = parseApp(entry, 'apps' in raw ? `apps[${index}]` : 'the secret', options.secretPrefix);
    if (apps.has(app.appid)) throw bad(`apps lists ${app.appid} twice`);
    apps.set(app.appid, app);
  });

  const clients = 'clients' in raw ? asArray(raw.clients, 'clients').map(parseClient) : [];
  const ids = new Set<string>();
  for (const client of clients) {
    if (ids.has(client.id)) throw bad(`clients lists the id "${client.id}" twice`);
    ids.add(client.id);
  }
  return { apps, clients };
}

function parseApp(entry: unknown, where: string, secretPrefix: string | undefined): AppConfig {
  if (!isObject(entry)) throw bad(`${where} is not an object; ${SECRET_FORMS}`);
  const { appid, secret } = entry;
  if (typeof appid !== 'string' || !APPID_PATTERN.test(appid)) {
    throw bad(`${where}.appid must be "wx" followed by 16 hex digits`);
  }
  if (secret === undefined && secretPrefix === undefined) {
    throw bad(
      `${where} (appid ${appid}) has no secret: put the AppSecret in the entry, or set WECHAT_SECRET_PREFIX and ` +
        `store it in the secret named that prefix + ${appid} as {"secret":"…"}`,
    );
  }
  if (secret !== undefined && !isAppSecret(secret)) {
    throw bad(`${where}.secret (appid ${appid}) must be the AppSecret: 8 to 128 printable characters`);
  }
  const tokenApi = entry.token_api ?? 'classic';
  if (tokenApi !== 'classic' && tokenApi !== 'stable') {
    throw bad(`${where}.token_api (appid ${appid}) must be "classic" or "stable"`);
  }
  const tickets = entry.tickets ?? [];
  if (!Array.isArray(tickets) || !tickets.every((t) => t === 'jsapi' || t === 'wx_card')) {
    throw bad(`${where}.tickets (appid ${appid}) must be a list of "jsapi" and "wx_card"`);
  }
  const app: AppConfig = { appid, tokenApi, tickets: [...new Set(tickets as TicketType[])] };
  if (secret !== undefined) app.secret = secret as string;
  return app;
}

function isAppSecret(value: unknown): value is string {
  return typeof value === 'string' && /^[\x21-\x7e]{8,128}$/.test(value);
}

/**
 * Parses an app's own secret (`{"secret":"…"}`, named WECHAT_SECRET_PREFIX + appid). Errors are
 * `config_invalid`, name the secret, and never quote its value.
 */
export function parseAppSecret(text: string, secretName: string): string {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    raw = undefined;
  }
  if (!isObject(raw) || !isAppSecret(raw.secret)) {
    throw new ServiceError(
      'config_invalid',
      `secret ${secretName} must be JSON {"secret":"<AppSecret>"}, the AppSecret 8 to 128 printable characters`,
    );
  }
  return raw.secret;
}

function parseClient(entry: unknown, index: number): ClientKey {
  const where = `clients[${index}]`;
  if (!isObject(entry)) throw bad(`${where} is not an object`);
  const { id, key_sha256: keySha256, appids } = entry;
  if (typeof id !== 'string' || !/^[A-Za-z0-9_.-]{1,64}$/.test(id)) {
    throw bad(`${where}.id must be 1 to 64 letters, digits, _ . or -`);
  }
  if (typeof keySha256 !== 'string' || !/^[0-9a-f]{64}$/.test(keySha256)) {
    throw bad(
      `${where}.key_sha256 (client ${id}) must be the lower-case hex SHA-256 of the key (64 characters)`,
    );
  }
  if (!Array.isArray(appids) || !appids.every((a) => typeof a === 'string' && APPID_PATTERN.test(a))) {
    throw bad(`${where}.appids (client ${id}) must be a list of appids ("wx" followed by 16 hex digits)`);
  }
  return { id, keySha256: Buffer.from(keySha256, 'hex'), appids: new Set(appids as string[]) };
}

/**
 * The client whose key this is, comparing SHA-256 digests in constant time against every client
 * (no early exit), or undefined.
 */
export function findClient(credentials: Credentials, key: string): ClientKey | undefined {
  const digest = sha256(key);
  let found: ClientKey | undefined;
  for (const client of credentials.clients) {
    if (timingSafeEqual(client.keySha256, digest) && found === undefined) found = client;
  }
  return found;
}

export function sha256(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}

/** Credentials from the environment, for local runs (WECHAT_APPID/WECHAT_APPSECRET). */
export class StaticCredentials implements SecretSource {
  readonly #credentials: Credentials;

  constructor(app: AppConfig, clientKey?: string) {
    this.#credentials = {
      apps: new Map([[app.appid, app]]),
      clients: clientKey ? [{ id: 'local', keySha256: sha256(clientKey), appids: new Set([app.appid]) }] : [],
    };
  }

  async get(): Promise<Credentials> {
    return this.#credentials;
  }
}

function asArray(value: unknown, name: string): unknown[] {
  if (!Array.isArray(value)) throw bad(`${name} must be a list; ${SECRET_FORMS}`);
  return value;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function bad(message: string): ServiceError {
  return new ServiceError('config_invalid', `credentials secret: ${message}`);
}

/** The app configured for `appid`. Throws `unknown_appid` (and the source's own errors). */
export async function requireApp(source: SecretSource, appid: string): Promise<AppConfig> {
  const app = (await source.get()).apps.get(appid);
  if (!app) throw unknownAppid(appid);
  return app;
}

/**
 * The app configured for `appid` with its AppSecret: from its entry, or from its own secret
 * (`SecretSource.appSecret`). `reload` re-reads both (WeChat rejected the AppSecret: it may have
 * been rotated). Throws `unknown_appid`, `config_invalid`, `secrets_unavailable`.
 */
export async function requireCredentials(
  source: SecretSource,
  appid: string,
  options: { reload?: boolean } = {},
): Promise<AppWithSecret> {
  const app = (await source.get(options)).apps.get(appid);
  if (!app) throw unknownAppid(appid);
  if (app.secret !== undefined) return app as AppWithSecret;
  if (!source.appSecret) {
    throw new ServiceError(
      'config_invalid',
      `appid ${appid} has no secret in the credentials secret, and no per-app secrets are configured (WECHAT_SECRET_PREFIX)`,
    );
  }
  return { ...app, secret: await source.appSecret(appid, options) };
}

/** The `unknown_appid` error: the appid has no entry in the apps list of the credentials secret. */
export function unknownAppid(appid: string): ServiceError {
  return new ServiceError(
    'unknown_appid',
    `appid ${appid} is not configured: add it to the apps list of the credentials secret`,
  );
}
