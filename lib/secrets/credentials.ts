import { createHash, timingSafeEqual } from 'node:crypto';
import {
  APPID_PATTERN,
  type AppConfig,
  type AppWithSecret,
  type ClientKey,
  type Credentials,
  type TicketType,
  WECHAT_APPID_PATTERN,
} from '../domain.ts';
import { ServiceError } from '../errors.ts';
import type { SecretSource } from '../ports.ts';

const SECRET_FORMS =
  'expected {"appid":"wx…","secret":"…"} or {"apps":[{"appid":"wx…","secret":"…","token_api":"classic"|"stable",' +
  '"tickets":["jsapi"]},{"kind":"wecom","corpid":"ww…","agentid":"1000002","secret":"…","tickets":["jsapi","agent_config"]}],' +
  '"clients":[{"id":"…","key_sha256":"<64 hex>","appids":["wx…","ww…:1000002"]}]}';

/**
 * The ticket names a WeCom entry may list. `agent_config` is WeCom's own name for the app ticket
 * (`/cgi-bin/ticket/get?type=agent_config`, signing `wx.agentConfig`); `agent_jsapi` is accepted
 * as another spelling of it.
 */
const WECOM_TICKETS: Readonly<Record<string, TicketType>> = {
  jsapi: 'jsapi',
  agent_config: 'agent_config',
  agent_jsapi: 'agent_config',
};

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
  if (entry.kind === 'wecom') return parseWeComApp(entry, where, secretPrefix);
  if (entry.kind !== undefined && entry.kind !== 'wechat') {
    throw bad(`${where}.kind must be "wecom" for a WeCom app, or absent for a WeChat app`);
  }
  const { appid, secret } = entry;
  if (typeof appid !== 'string' || !WECHAT_APPID_PATTERN.test(appid)) {
    throw bad(`${where}.appid must be "wx" followed by 16 hex digits`);
  }
  checkSecret(secret, where, `appid ${appid}`, 'AppSecret', secretPrefix);
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

/** A WeCom self-built app: its id is `corpid:agentid`; tokens come from gettoken. */
function parseWeComApp(
  entry: Record<string, unknown>,
  where: string,
  secretPrefix: string | undefined,
): AppConfig {
  const { corpid, secret } = entry;
  if (typeof corpid !== 'string' || !/^w[wx][0-9a-f]{16}$/.test(corpid)) {
    throw bad(
      `${where}.corpid must be the WeCom corp ID: "ww" (older corps "wx") followed by 16 lower-case hex digits`,
    );
  }
  const agentid = typeof entry.agentid === 'number' ? String(entry.agentid) : entry.agentid;
  if (typeof agentid !== 'string' || !/^[1-9][0-9]{0,9}$/.test(agentid)) {
    throw bad(`${where}.agentid (corp ${corpid}) must be the app's AgentId: digits, such as "1000002"`);
  }
  const appid = `${corpid}:${agentid}`;
  if (entry.token_api !== undefined) {
    throw bad(
      `${where}.token_api (app ${appid}) does not apply to WeCom apps, which have one token endpoint: remove it`,
    );
  }
  checkSecret(secret, where, `app ${appid}`, "app's Secret", secretPrefix);
  const listed = entry.tickets ?? [];
  if (
    !Array.isArray(listed) ||
    !listed.every((t) => typeof t === 'string' && Object.hasOwn(WECOM_TICKETS, t))
  ) {
    throw bad(`${where}.tickets (app ${appid}) must be a list of "jsapi" and "agent_config"`);
  }
  const tickets = (listed as string[]).map((t) => WECOM_TICKETS[t] as TicketType);
  const app: AppConfig = { appid, tokenApi: 'wecom', tickets: [...new Set(tickets)] };
  if (secret !== undefined) app.secret = secret as string;
  return app;
}

/**
 * Throws `config_invalid` naming the entry, never quoting the value. An entry may leave its secret
 * to a secret of its own when WECHAT_SECRET_PREFIX is set.
 */
function checkSecret(
  secret: unknown,
  where: string,
  which: string,
  what: string,
  secretPrefix: string | undefined,
): void {
  if (secret === undefined) {
    if (secretPrefix !== undefined) return;
    throw bad(
      `${where} (${which}) has no secret: put the ${what} in the entry, or set WECHAT_SECRET_PREFIX and ` +
        'store it as {"secret":"…"} in the secret named that prefix + the app id (a WeCom id with "-" for ":")',
    );
  }
  if (!isAppSecret(secret)) {
    throw bad(`${where}.secret (${which}) must be the ${what}: 8 to 128 printable characters`);
  }
}

/**
 * The name of an app's own secret: WECHAT_SECRET_PREFIX + the app id, a WeCom `corpid:agentid` as
 * `corpid-agentid` (Secrets Manager names allow letters, digits and /_+=.@- only).
 */
export function appSecretName(prefix: string, appid: string): string {
  return `${prefix}${appid.replace(':', '-')}`;
}

function isAppSecret(value: unknown): value is string {
  return typeof value === 'string' && /^[\x21-\x7e]{8,128}$/.test(value);
}

/**
 * Parses an app's own secret (`{"secret":"…"}`, named by appSecretName). Errors are
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
    throw bad(
      `${where}.appids (client ${id}) must be a list of app ids: WeChat appids ("wx" followed by 16 hex digits) ` +
        'or WeCom apps ("corpid:agentid")',
    );
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
