import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { AppConfig, Credentials } from '../../../lib/domain.ts';
import { ServiceError } from '../../../lib/errors.ts';
import { findClient, parseCredentials, StaticCredentials } from '../../../lib/secrets/credentials.ts';
import {
  CLIENT_KEY,
  CLIENT_KEY_OTHER,
  TEST_APPID,
  TEST_APPID_2,
  TEST_APPID_STABLE,
  TEST_SECRET,
  TEST_SECRET_2,
  TEST_SECRET_STABLE,
} from '../../support/secrets.ts';

const sha256Hex = (text: string) => createHash('sha256').update(text, 'utf8').digest('hex');

/** The many-apps form, valid; tests break one part of it at a time. */
function multi() {
  return {
    apps: [
      { appid: TEST_APPID, secret: TEST_SECRET } as Record<string, unknown>,
      {
        appid: TEST_APPID_STABLE,
        secret: TEST_SECRET_STABLE,
        token_api: 'stable',
        tickets: ['jsapi', 'wx_card'],
      },
    ] as Record<string, unknown>[],
    clients: [
      { id: 'billing', key_sha256: sha256Hex(CLIENT_KEY), appids: [TEST_APPID] },
      {
        id: 'other.service-2',
        key_sha256: sha256Hex(CLIENT_KEY_OTHER),
        appids: [TEST_APPID, TEST_APPID_STABLE],
      },
    ] as Record<string, unknown>[],
  };
}

const VALUES_NEVER_QUOTED = [TEST_SECRET, TEST_SECRET_2, TEST_SECRET_STABLE, CLIENT_KEY, CLIENT_KEY_OTHER];

const SECRET_NAMES = new Map([
  [TEST_SECRET, 'TEST_SECRET'],
  [TEST_SECRET_2, 'TEST_SECRET_2'],
  [TEST_SECRET_STABLE, 'TEST_SECRET_STABLE'],
]);

/** An app with its AppSecret replaced by the constant's name, so a failing assertion prints no secret. */
function shown(app: AppConfig | undefined) {
  return app && { ...app, secret: SECRET_NAMES.get(app.secret ?? '') ?? 'an unexpected secret' };
}

function parseError(text: string): ServiceError {
  try {
    parseCredentials(text);
  } catch (err) {
    expect(err).toBeInstanceOf(ServiceError);
    return err as ServiceError;
  }
  throw new Error('parseCredentials accepted a secret it should have rejected');
}

describe('parseCredentials', () => {
  it('reads the one-app form the seeds store, as a classic app without tickets or clients', () => {
    const credentials = parseCredentials(JSON.stringify({ appid: TEST_APPID, secret: TEST_SECRET }));
    expect([...credentials.apps.values()].map(shown)).toEqual([
      { appid: TEST_APPID, secret: 'TEST_SECRET', tokenApi: 'classic', tickets: [] },
    ]);
    expect(credentials.clients).toEqual([]);
  });

  it('reads the many-apps form with token APIs, tickets and client keys', () => {
    const credentials = parseCredentials(JSON.stringify(multi()));
    expect(shown(credentials.apps.get(TEST_APPID))).toEqual({
      appid: TEST_APPID,
      secret: 'TEST_SECRET',
      tokenApi: 'classic',
      tickets: [],
    });
    expect(shown(credentials.apps.get(TEST_APPID_STABLE))).toEqual({
      appid: TEST_APPID_STABLE,
      secret: 'TEST_SECRET_STABLE',
      tokenApi: 'stable',
      tickets: ['jsapi', 'wx_card'],
    });
    expect(credentials.clients.map((c) => c.id)).toEqual(['billing', 'other.service-2']);
    expect(credentials.clients[0]?.keySha256.toString('hex')).toBe(sha256Hex(CLIENT_KEY));
    expect([...(credentials.clients[1]?.appids ?? [])]).toEqual([TEST_APPID, TEST_APPID_STABLE]);
  });

  it('lists a ticket type once however often the secret repeats it', () => {
    const secret = multi();
    secret.apps[0] = { appid: TEST_APPID, secret: TEST_SECRET, tickets: ['jsapi', 'jsapi'] };
    expect(parseCredentials(JSON.stringify(secret)).apps.get(TEST_APPID)?.tickets).toEqual(['jsapi']);
  });

  it('accepts an apps list without clients', () => {
    const credentials = parseCredentials(
      JSON.stringify({ apps: [{ appid: TEST_APPID_2, secret: TEST_SECRET_2 }] }),
    );
    expect([...credentials.apps.keys()]).toEqual([TEST_APPID_2]);
    expect(credentials.clients).toEqual([]);
  });

  const broken: [what: string, mentions: string, text: () => string][] = [
    ['not JSON', 'not JSON', () => JSON.stringify({ appid: TEST_APPID, secret: TEST_SECRET }).slice(0, -2)],
    ['a JSON array', 'not a JSON object', () => JSON.stringify([{ appid: TEST_APPID, secret: TEST_SECRET }])],
    ['JSON null', 'not a JSON object', () => 'null'],
    [
      'apps that is not a list',
      'apps',
      () => JSON.stringify({ apps: { appid: TEST_APPID, secret: TEST_SECRET } }),
    ],
    [
      'an app that is not an object',
      'apps[1]',
      () => JSON.stringify({ ...multi(), apps: [multi().apps[0], TEST_SECRET_2] }),
    ],
    ['a one-app secret without an appid', 'the secret.appid', () => JSON.stringify({ secret: TEST_SECRET })],
    [
      'an appid that is not wx + 16 hex',
      'apps[1].appid',
      () => withApp(1, { appid: 'wx123', secret: TEST_SECRET_2 }),
    ],
    [
      'a secret that is not a string',
      'apps[1].secret',
      () => withApp(1, { appid: TEST_APPID_2, secret: 12345678 }),
    ],
    [
      'a secret shorter than 8',
      'apps[1].secret',
      () => withApp(1, { appid: TEST_APPID_2, secret: 'abc1234' }),
    ],
    [
      'a secret longer than 128',
      'apps[1].secret',
      () => withApp(1, { appid: TEST_APPID_2, secret: TEST_SECRET_2.repeat(5) }),
    ],
    [
      'a secret with a space',
      'apps[1].secret',
      () => withApp(1, { appid: TEST_APPID_2, secret: `${TEST_SECRET_2} ` }),
    ],
    [
      'a secret with a non-ASCII character',
      'apps[1].secret',
      () => withApp(1, { appid: TEST_APPID_2, secret: `${TEST_SECRET_2}é` }),
    ],
    [
      'an unknown token_api',
      'apps[1].token_api',
      () => withApp(1, { appid: TEST_APPID_2, secret: TEST_SECRET_2, token_api: 'fast' }),
    ],
    [
      'tickets that are not a list',
      'apps[1].tickets',
      () => withApp(1, { appid: TEST_APPID_2, secret: TEST_SECRET_2, tickets: 'jsapi' }),
    ],
    [
      'an unknown ticket type',
      'apps[1].tickets',
      () => withApp(1, { appid: TEST_APPID_2, secret: TEST_SECRET_2, tickets: ['card'] }),
    ],
    [
      'an appid listed twice',
      `${TEST_APPID} twice`,
      () => withApp(1, { appid: TEST_APPID, secret: TEST_SECRET_2 }),
    ],
    [
      'clients that is not a list',
      'clients',
      () => JSON.stringify({ ...multi(), clients: { id: 'billing' } }),
    ],
    ['a client that is not an object', 'clients[1]', () => withClient(1, CLIENT_KEY_OTHER)],
    [
      'a client id with a space',
      'clients[1].id',
      () => withClient(1, { ...multi().clients[1], id: 'other service' }),
    ],
    [
      'a client key given in plain text',
      'clients[1].key_sha256',
      () => withClient(1, { ...multi().clients[1], key_sha256: CLIENT_KEY_OTHER }),
    ],
    [
      'an upper-case key hash',
      'clients[1].key_sha256',
      () => withClient(1, { ...multi().clients[1], key_sha256: sha256Hex(CLIENT_KEY_OTHER).toUpperCase() }),
    ],
    [
      'a 63-digit key hash',
      'clients[1].key_sha256',
      () => withClient(1, { ...multi().clients[1], key_sha256: sha256Hex(CLIENT_KEY_OTHER).slice(1) }),
    ],
    [
      'client appids that are not appids',
      'clients[1].appids',
      () => withClient(1, { ...multi().clients[1], appids: ['billing'] }),
    ],
    [
      'client appids that are not a list',
      'clients[1].appids',
      () => withClient(1, { ...multi().clients[1], appids: TEST_APPID }),
    ],
    [
      'a client id listed twice',
      '"billing" twice',
      () => withClient(1, { ...multi().clients[1], id: 'billing' }),
    ],
  ];

  it.each(broken)(
    'rejects %s with config_invalid naming %s and quoting no secret',
    (_what, mentions, text) => {
      const err = parseError(text());
      for (const value of VALUES_NEVER_QUOTED) expect(err.message.includes(value)).toBe(false);
      expect(err.code).toBe('config_invalid');
      expect(err.message).toContain(mentions);
    },
  );
});

function withApp(index: number, app: Record<string, unknown>): string {
  const secret = multi();
  secret.apps[index] = app;
  return JSON.stringify(secret);
}

function withClient(index: number, client: unknown): string {
  const secret = multi();
  (secret.clients as unknown[])[index] = client;
  return JSON.stringify(secret);
}

describe('findClient', () => {
  const credentials: Credentials = parseCredentials(JSON.stringify(multi()));

  it.each([
    [CLIENT_KEY, 'billing'],
    [CLIENT_KEY_OTHER, 'other.service-2'],
  ])('finds the client whose key_sha256 is the SHA-256 of the key', (key, id) => {
    expect(findClient(credentials, key)?.id).toBe(id);
  });

  it.each([
    ['an unknown key', 'client-key-unknown-000000000000'],
    ['the empty key', ''],
    ['a key differing in case', CLIENT_KEY.toUpperCase()],
    ['the stored hash itself', sha256Hex(CLIENT_KEY)],
  ])('finds nothing for %s', (_what, key) => {
    expect(findClient(credentials, key)).toBeUndefined();
  });

  it('finds nothing when no clients are configured', () => {
    const noClients = parseCredentials(JSON.stringify({ appid: TEST_APPID, secret: TEST_SECRET }));
    expect(findClient(noClients, CLIENT_KEY)).toBeUndefined();
  });
});

describe('StaticCredentials', () => {
  const app = { appid: TEST_APPID, secret: TEST_SECRET, tokenApi: 'classic' as const, tickets: [] };

  it('serves the one local app and a client key scoped to it', async () => {
    const credentials = await new StaticCredentials(app, CLIENT_KEY).get();
    expect([...credentials.apps.values()].map(shown)).toEqual([shown(app)]);
    const client = findClient(credentials, CLIENT_KEY);
    expect([...(client?.appids ?? [])]).toEqual([TEST_APPID]);
    expect(findClient(credentials, CLIENT_KEY_OTHER)).toBeUndefined();
  });

  it('has no HTTP clients without a key', async () => {
    expect((await new StaticCredentials(app).get()).clients).toEqual([]);
  });
});
