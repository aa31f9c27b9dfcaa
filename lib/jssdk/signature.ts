import { createHash, randomBytes } from 'node:crypto';
import { ServiceError } from '../errors.ts';

/** Longest page URL accepted for signing. */
export const MAX_PAGE_URL_LENGTH = 2048;

/**
 * The page URL WeChat signs: absolute http(s), at most {@link MAX_PAGE_URL_LENGTH} characters, no
 * whitespace or control characters; the `#fragment` removed and nothing else changed (no
 * normalisation, no escaping — WeChat signs the URL exactly as the browser has it).
 * Throws `invalid_request` saying what to fix.
 */
export function pageUrlForSignature(url: unknown): string {
  if (typeof url !== 'string' || url.length === 0) {
    throw new ServiceError(
      'invalid_request',
      'url must be the full URL of the page calling wx.config (a string)',
    );
  }
  if (url.length > MAX_PAGE_URL_LENGTH) {
    throw new ServiceError(
      'invalid_request',
      `url must be at most ${MAX_PAGE_URL_LENGTH} characters; got ${url.length}`,
    );
  }
  // location.href is ASCII (non-ASCII is percent-encoded, hosts are punycode): anything else,
  // whitespace and control characters included, can never match what the page signs.
  if (!/^[\x21-\x7e]+$/.test(url)) {
    throw new ServiceError(
      'invalid_request',
      'url must be printable ASCII without spaces, as location.href gives it (non-ASCII percent-encoded)',
    );
  }
  if (!/^https?:\/\/[^/?#]+/i.test(url)) {
    throw new ServiceError(
      'invalid_request',
      'url must be an absolute http:// or https:// URL including the host (location.href.split("#")[0])',
    );
  }
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new ServiceError('invalid_request', 'url is not a valid absolute URL');
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new ServiceError('invalid_request', 'url must be an http:// or https:// URL');
  }
  const hash = url.indexOf('#');
  return hash === -1 ? url : url.slice(0, hash);
}

/**
 * The JS-SDK signature (WeChat JS-SDK appendix 1): SHA-1 hex of
 * `jsapi_ticket=…&noncestr=…&timestamp=…&url=…` — fields in ASCII order, values unescaped.
 */
export function jsapiSignature(
  ticket: string,
  nonceStr: string,
  timestampSeconds: number,
  url: string,
): string {
  const plain = `jsapi_ticket=${ticket}&noncestr=${nonceStr}&timestamp=${timestampSeconds}&url=${url}`;
  return createHash('sha1').update(plain, 'utf8').digest('hex');
}

/** A fresh nonce for wx.config: 16 random bytes as base64url (22 characters of [A-Za-z0-9_-]). */
export function newNonce(): string {
  return randomBytes(16).toString('base64url');
}
