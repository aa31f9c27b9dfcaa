/**
 * Recognising "WeChat says this access token is dead" in whatever shape a business call hands it
 * back: WeChat's JSON body (`{errcode, errmsg}`), or an error an SDK threw with the errcode in
 * `code` (co-wechat-api, wechat-api) or `errcode`.
 */

/**
 * Business-API errcodes that mean "this access token is dead" (the service's list in
 * lib/wechat/errcodes.ts; a unit test keeps them equal).
 */
export const TOKEN_INVALID_ERRCODES: ReadonlySet<number> = new Set([40001, 40014, 42001]);

/** WeChat's errcode carried by `value`, if any: `value.errcode`, or a numeric `value.code`. */
export function wechatErrcode(value: unknown): number | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const fields = value as { errcode?: unknown; code?: unknown };
  const errcode = toErrcode(fields.errcode);
  if (errcode !== undefined) return errcode;
  // Node's own errors carry string codes (ECONNRESET): only a number, or all digits, is WeChat's.
  return toErrcode(fields.code);
}

function toErrcode(value: unknown): number | undefined {
  if (typeof value === 'number' && Number.isInteger(value)) return value;
  if (typeof value === 'string' && /^-?\d{1,9}$/.test(value)) return Number(value);
  return undefined;
}

/** Whether WeChat rejected the access token itself: 40001, 40014 or 42001. */
export function isInvalidTokenErrcode(errcode: number | undefined): boolean {
  return errcode !== undefined && TOKEN_INVALID_ERRCODES.has(errcode);
}
