/** WECOM_API_BASE_URL: read beside WECHAT_API_BASE_URL, with the same checks. */
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../lib/config.ts';

const ENV = { WECHAT_SECRET_ID: 'wechat-token-service/credentials' };

describe('WECOM_API_BASE_URL', () => {
  it("defaults to WeCom's API and drops trailing slashes", () => {
    expect(loadConfig(ENV).wecomApiBaseUrl).toBe('https://qyapi.weixin.qq.com');
    expect(loadConfig({ ...ENV, WECOM_API_BASE_URL: 'http://127.0.0.1:4000//' }).wecomApiBaseUrl).toBe(
      'http://127.0.0.1:4000',
    );
  });

  it('is config_invalid naming the variable when it is not an http(s) URL', () => {
    expect(() => loadConfig({ ...ENV, WECOM_API_BASE_URL: 'ftp://qyapi.example' })).toThrow(
      /^WECOM_API_BASE_URL must be an http\(s\) URL/,
    );
    expect(() => loadConfig({ ...ENV, WECOM_API_BASE_URL: 'qyapi' })).toThrow(/^WECOM_API_BASE_URL must be/);
  });
});
