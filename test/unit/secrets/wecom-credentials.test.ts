/** WeCom entries of the credentials secret: their id, their checks, and WeChat entries beside them. */
import { describe, expect, it } from 'vitest';
import { ServiceError } from '../../../lib/errors.ts';
import { parseCredentials } from '../../../lib/secrets/credentials.ts';
import {
  TEST_APPID,
  TEST_SECRET,
  WECOM_CORP_A,
  WECOM_SECRET_A1,
  WECOM_SECRET_A2,
} from '../../support/secrets.ts';

const entry = (fields: Record<string, unknown> = {}) => ({
  kind: 'wecom',
  corpid: WECOM_CORP_A,
  agentid: '1000002',
  secret: WECOM_SECRET_A1,
  ...fields,
});
const parse = (apps: unknown[], clients: unknown[] = []) =>
  parseCredentials(JSON.stringify({ apps, clients }));

function rejected(apps: unknown[], clients: unknown[] = []): ServiceError {
  try {
    parse(apps, clients);
  } catch (err) {
    expect(err).toBeInstanceOf(ServiceError);
    expect((err as ServiceError).code).toBe('config_invalid');
    expect((err as ServiceError).message).not.toContain(WECOM_SECRET_A1);
    return err as ServiceError;
  }
  throw new Error('the secret was accepted');
}

describe('a WeCom entry', () => {
  it('is the app corpid:agentid, fetched with gettoken, beside an unchanged WeChat entry', () => {
    const credentials = parse([
      { appid: TEST_APPID, secret: TEST_SECRET, tickets: ['jsapi'] },
      entry({ tickets: ['jsapi', 'agent_config'] }),
    ]);
    expect(credentials.apps.get(`${WECOM_CORP_A}:1000002`)).toEqual({
      appid: `${WECOM_CORP_A}:1000002`,
      secret: WECOM_SECRET_A1,
      tokenApi: 'wecom',
      tickets: ['jsapi', 'agent_config'],
    });
    expect(credentials.apps.get(TEST_APPID)).toEqual({
      appid: TEST_APPID,
      secret: TEST_SECRET,
      tokenApi: 'classic',
      tickets: ['jsapi'],
    });
  });

  it('takes the agentid as a number too, and agent_jsapi as another name of agent_config', () => {
    const credentials = parse([
      entry({ agentid: 1000003, secret: WECOM_SECRET_A2, tickets: ['agent_jsapi'] }),
    ]);
    expect(credentials.apps.get(`${WECOM_CORP_A}:1000003`)?.tickets).toEqual(['agent_config']);
  });

  it('may be the whole secret (the one-app form)', () => {
    const credentials = parseCredentials(JSON.stringify(entry()));
    expect([...credentials.apps.keys()]).toEqual([`${WECOM_CORP_A}:1000002`]);
  });

  it('is scoped in client keys by its id', () => {
    const credentials = parse(
      [entry()],
      [{ id: 'portal', key_sha256: 'a'.repeat(64), appids: [`${WECOM_CORP_A}:1000002`, TEST_APPID] }],
    );
    expect(credentials.clients[0]?.appids.has(`${WECOM_CORP_A}:1000002`)).toBe(true);
  });

  it.each([
    [{ corpid: 'ww0A1B2C3D4E5F6071' }, 'apps[0].corpid must be the WeCom corp ID'],
    [{ corpid: 'wy0a1b2c3d4e5f6071' }, 'apps[0].corpid'],
    [{ agentid: '01000002' }, `apps[0].agentid (corp ${WECOM_CORP_A}) must be the app's AgentId`],
    [{ agentid: 'abc' }, 'apps[0].agentid'],
    [{ agentid: undefined }, 'apps[0].agentid'],
    [{ secret: 'short' }, `apps[0].secret (app ${WECOM_CORP_A}:1000002) must be the app's Secret`],
    [{ tickets: ['wx_card'] }, 'must be a list of "jsapi" and "agent_config"'],
    [{ token_api: 'stable' }, 'does not apply to WeCom apps'],
    [{ kind: 'qywx' }, 'apps[0].kind must be "wecom"'],
  ])('%j is config_invalid naming the field', (fields, message) => {
    expect(rejected([entry(fields)]).message).toContain(message);
  });

  it('a client scope that is no app id is refused', () => {
    const message = rejected(
      [entry()],
      [{ id: 'p', key_sha256: 'a'.repeat(64), appids: [`${WECOM_CORP_A}:x`] }],
    ).message;
    expect(message).toContain('"corpid:agentid"');
  });

  it('one app listed twice is refused', () => {
    expect(rejected([entry(), entry({ agentid: 1000002 })]).message).toContain('twice');
  });
});
