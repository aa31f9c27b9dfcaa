import { APPID_PATTERN, type TicketType } from '../lib/config.ts';
import { ServiceError } from '../lib/errors.ts';
import { pageUrlForSignature } from '../lib/jssdk/signature.ts';

/** The operations every channel offers (direct invoke `action`, or the HTTP route). */
export type Operation = 'get_token' | 'refresh_token' | 'get_ticket' | 'jssdk_config';

export const OPERATIONS: readonly Operation[] = ['get_token', 'refresh_token', 'get_ticket', 'jssdk_config'];

/** Validated input of one operation. */
export type Request =
  | { operation: 'get_token'; appid: string }
  | { operation: 'refresh_token'; appid: string; invalidToken: string }
  | { operation: 'get_ticket'; appid: string; type: TicketType }
  | { operation: 'jssdk_config'; appid: string; url: string };

/** Validates the fields of an operation; every failure is `invalid_request` naming the field. */
export function parseRequest(operation: Operation, fields: Record<string, unknown>): Request {
  const appid = parseAppid(fields.appid);
  switch (operation) {
    case 'get_token':
      return { operation, appid };
    case 'refresh_token':
      return { operation, appid, invalidToken: parseToken(fields.invalid_token) };
    case 'get_ticket':
      return { operation, appid, type: parseTicketType(fields.type) };
    case 'jssdk_config':
      return { operation, appid, url: pageUrlForSignature(fields.url) };
  }
}

export function parseAppid(value: unknown): string {
  if (value === undefined || value === null || value === '') {
    throw new ServiceError(
      'invalid_request',
      'appid is required: the WeChat appid, "wx" followed by 16 hex digits',
    );
  }
  if (typeof value !== 'string' || !APPID_PATTERN.test(value)) {
    throw new ServiceError(
      'invalid_request',
      'appid must be a WeChat appid: "wx" followed by 16 lower-case hex digits',
    );
  }
  return value;
}

function parseToken(value: unknown): string {
  if (
    typeof value !== 'string' ||
    value.length === 0 ||
    value.length > 2048 ||
    !/^[\x21-\x7e]+$/.test(value)
  ) {
    throw new ServiceError(
      'invalid_request',
      'invalid_token must be the access token WeChat rejected (a string of up to 2048 printable characters)',
    );
  }
  return value;
}

function parseTicketType(value: unknown): TicketType {
  if (value !== 'jsapi' && value !== 'wx_card') {
    throw new ServiceError('invalid_request', 'type must be "jsapi" (JS-SDK) or "wx_card" (card api_ticket)');
  }
  return value;
}
