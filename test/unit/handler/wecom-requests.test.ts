/** The id corpid:agentid and WeCom's ticket types as every channel validates them (handler/operations.ts). */
import { describe, expect, it } from 'vitest';
import { parseRequest } from '../../../handler/operations.ts';
import { APPID_PATTERN, weComApp } from '../../../lib/domain.ts';
import { recordKeys } from '../../../lib/token/record.ts';
import { TEST_APPID, WECOM_APP_A1, WECOM_CORP_A } from '../../support/secrets.ts';

const url = 'https://work.example.com/a';

describe('corpid:agentid', () => {
  it('is accepted, and split into its corp and agent', () => {
    expect(parseRequest('get_token', { appid: WECOM_APP_A1 })).toEqual({
      operation: 'get_token',
      appid: WECOM_APP_A1,
    });
    expect(weComApp(WECOM_APP_A1)).toEqual({ corpid: WECOM_CORP_A, agentid: '1000002' });
    expect(weComApp(TEST_APPID)).toBeUndefined();
  });

  it.each([
    `${WECOM_CORP_A}:`,
    `${WECOM_CORP_A}:0`,
    `${WECOM_CORP_A}:01`,
    `${WECOM_CORP_A}:12345678901`,
    `${WECOM_CORP_A} :1000002`,
    `${WECOM_CORP_A}:1000002\n`,
    `${WECOM_CORP_A.toUpperCase()}:1000002`,
    'wy0a1b2c3d4e5f6071:1000002',
    `${WECOM_CORP_A}:1000002:1`,
  ])('%j is invalid_request', (appid) => {
    expect(() => parseRequest('get_token', { appid })).toThrow(/WeCom app \("corpid:agentid"/);
  });

  it('makes cache keys without spaces or control characters, far below 250 bytes', () => {
    const longest = `${WECOM_CORP_A}:9999999999`;
    expect(APPID_PATTERN.test(longest)).toBe(true);
    for (const key of Object.values(
      recordKeys('abcdefghijklmnopqrstuvwxyz012345', 'agent_config_ticket', longest),
    )) {
      expect(key).toMatch(/^[\x21-\x7e]+$/);
      expect(Buffer.byteLength(key)).toBeLessThan(250);
    }
  });
});

describe("a WeCom app's tickets", () => {
  it('jsapi and agent_config, never wx_card; a WeChat appid never agent_config', () => {
    expect(parseRequest('get_ticket', { appid: WECOM_APP_A1, type: 'agent_config' })).toMatchObject({
      type: 'agent_config',
    });
    expect(() => parseRequest('get_ticket', { appid: WECOM_APP_A1, type: 'wx_card' })).toThrow(
      /agent_config/,
    );
    expect(() => parseRequest('get_ticket', { appid: TEST_APPID, type: 'agent_config' })).toThrow(/wx_card/);
  });

  it('jssdk_config takes agent_config: true for a WeCom app only, and nothing but a boolean', () => {
    expect(parseRequest('jssdk_config', { appid: WECOM_APP_A1, url, agent_config: true })).toMatchObject({
      agentConfig: true,
    });
    expect(parseRequest('jssdk_config', { appid: WECOM_APP_A1, url })).toMatchObject({ agentConfig: false });
    expect(() => parseRequest('jssdk_config', { appid: WECOM_APP_A1, url, agent_config: 'yes' })).toThrow(
      'agent_config must be true or false',
    );
    expect(() => parseRequest('jssdk_config', { appid: TEST_APPID, url, agent_config: true })).toThrow(
      /wx.agentConfig does not exist/,
    );
  });
});
