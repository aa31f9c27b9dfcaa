import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { ServiceError } from '../../../lib/errors.ts';
import {
  jsapiSignature,
  MAX_PAGE_URL_LENGTH,
  newNonce,
  pageUrlForSignature,
} from '../../../lib/jssdk/signature.ts';

function rejection(url: unknown): ServiceError {
  try {
    pageUrlForSignature(url);
  } catch (err) {
    expect(err).toBeInstanceOf(ServiceError);
    return err as ServiceError;
  }
  throw new Error('pageUrlForSignature accepted a URL it should have rejected');
}

describe('jsapiSignature', () => {
  it('reproduces the official JS-SDK example (appendix 1)', () => {
    const signature = jsapiSignature(
      'sM4AOVdWfPE4DxkXGEs8VMCPGGVi4C3VM0P37wVUCFvkVAy_90u5h9nbSlYy3-Sl-HhTdfl2fzFy1AOcHKP7qg',
      'Wm3WZYTPz0wzccnW',
      1414587457,
      'http://mp.weixin.qq.com',
    );
    expect(signature).toBe('f4d90daf4b3bca3078ab155816175ba34c443a7b');
  });

  it.each([
    ['a query string', 'https://shop.example.cn/pay?order=A%2F1&from=singlemessage&isappinstalled=0'],
    ['non-ASCII path', 'https://例子.cn/页面?q=值'],
    ['an ampersand-heavy query', 'https://a.cn/?x=1&y=2&jsapi_ticket=fake'],
  ])('signs the fields sorted by name, unescaped, with %s', (_kind, url) => {
    const ticket = `TICKET-${Math.random().toString(36).slice(2)}`;
    const nonce = newNonce();
    const timestamp = Math.floor(Date.UTC(2025, 0, 15) / 1000) + Math.floor(Math.random() * 1000);
    const fields: Record<string, string> = {
      url,
      timestamp: String(timestamp),
      noncestr: nonce,
      jsapi_ticket: ticket,
    };
    const string1 = Object.keys(fields)
      .sort()
      .map((k) => `${k}=${fields[k]}`)
      .join('&');
    const expected = createHash('sha1').update(string1, 'utf8').digest('hex');
    expect(jsapiSignature(ticket, nonce, timestamp, url)).toBe(expected);
  });
});

describe('pageUrlForSignature', () => {
  it.each([
    'http://mp.weixin.qq.com',
    'https://Shop.Example.CN/Path/Page.HTML?Q=Upper&x=%E4%B8%AD%e6%96%87',
    'https://a.cn/%2Fencoded%2fslash?empty=&dup=1&dup=2',
    'https://a.cn:8443/p;param?x=1',
    'HTTPS://A.CN/',
    `https://a.cn/${'p'.repeat(MAX_PAGE_URL_LENGTH - 'https://a.cn/'.length)}`,
  ])('leaves %s exactly as the browser has it', (url) => {
    expect(pageUrlForSignature(url)).toBe(url);
  });

  it.each([
    ['https://a.cn/page?x=1#/route?y=2', 'https://a.cn/page?x=1'],
    ['https://a.cn/#', 'https://a.cn/'],
    ['https://a.cn#top', 'https://a.cn'],
    ['https://a.cn/spa/#/orders/1#anchor', 'https://a.cn/spa/'],
  ])('drops the fragment of %s and nothing else', (url, expected) => {
    expect(pageUrlForSignature(url)).toBe(url.slice(0, url.indexOf('#')));
    expect(pageUrlForSignature(url)).toBe(expected);
  });

  it.each([
    ['relative', '/pay?order=1'],
    ['protocol-relative', '//a.cn/pay'],
    ['javascript:', 'javascript:alert(1)'],
    ['ftp:', 'ftp://a.cn/file'],
    ['data:', 'data:text/html,hi'],
    ['without a host', 'https://'],
    ['with a bad port', 'https://a.cn:99999/'],
    ['too long', `https://a.cn/${'p'.repeat(5000)}`],
    [
      'one character too long',
      `https://a.cn/${'p'.repeat(MAX_PAGE_URL_LENGTH - 'https://a.cn/'.length + 1)}`,
    ],
    ['with a space', 'https://a.cn/a b'],
    ['with a tab', 'https://a.cn/\tpage'],
    ['with a newline', 'https://a.cn/page\n'],
    ['with a NUL', 'https://a.cn/\u0000'],
    ['with DEL', 'https://a.cn/\u007f'],
    ['with leading whitespace', ' https://a.cn/'],
    ['empty', ''],
  ])('rejects a URL %s with invalid_request', (_kind, url) => {
    const err = rejection(url);
    expect(err.code).toBe('invalid_request');
    expect(err.status).toBe(400);
    expect(err.message).toMatch(/url/);
  });

  it.each([undefined, null, 42, ['https://a.cn/'], { href: 'https://a.cn/' }])(
    'rejects a url that is not a string (%j) with invalid_request',
    (url) => {
      expect(rejection(url).code).toBe('invalid_request');
    },
  );

  // location.href never holds raw non-ASCII (it percent-encodes it): such a URL can never match.
  it.each([
    ['a C1 control (U+0085)', 'https://a.cn/a\u0085b'],
    ['a no-break space (U+00A0)', 'https://a.cn/a\u00a0b'],
    ['a line separator (U+2028)', 'https://a.cn/a\u2028b'],
    ['an ideographic space (U+3000)', 'https://a.cn/a\u3000b'],
  ])('rejects a URL with %s with invalid_request', (_kind, url) => {
    expect(rejection(url).code).toBe('invalid_request');
  });
});

describe('newNonce', () => {
  it('is 22 characters of [A-Za-z0-9_-] (16 random bytes, base64url)', () => {
    for (let i = 0; i < 100; i++) expect(newNonce()).toMatch(/^[A-Za-z0-9_-]{22}$/);
  });

  it('differs on every call', () => {
    const nonces = Array.from({ length: 1000 }, () => newNonce());
    expect(new Set(nonces).size).toBe(nonces.length);
  });
});
