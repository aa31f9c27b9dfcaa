/**
 * The one error class a consumer of the service sees. Its `code` is either the service's own code
 * (the closed catalogue of lib/errors.ts, passed through unchanged with the service's `retryable`
 * and WeChat's `errcode`) or one of the few codes the client adds for what happens before an answer
 * exists: a bad argument, an unreachable or refusing service, a malformed answer, the deadline.
 *
 * The client is shipped to consumers on its own (dist/client.*), so it imports nothing of the
 * service: the service's codes are listed here again, and a unit test keeps the two lists equal.
 *
 * Messages never contain a token, a ticket or a client key.
 */

/** The service's error codes (lib/errors.ts `ERROR_CATALOGUE`), each with its retryability. */
export const SERVICE_ERROR_CODES: {
  readonly invalid_request: false;
  readonly unauthorized: false;
  readonly forbidden: false;
  readonly unknown_appid: false;
  readonly route_not_found: false;
  readonly method_not_allowed: false;
  readonly refresh_rejected: true;
  readonly wechat_credentials_rejected: false;
  readonly wechat_ip_not_whitelisted: false;
  readonly wechat_ip_confirmation_required: false;
  readonly wechat_rejected: false;
  readonly wechat_bad_response: true;
  readonly wechat_quota_exhausted: false;
  readonly wechat_rate_limited: true;
  readonly wechat_unavailable: true;
  readonly wechat_timeout: true;
  readonly refresh_in_progress: true;
  readonly cache_unavailable: true;
  readonly secrets_unavailable: true;
  readonly config_invalid: false;
  readonly internal_error: false;
} = {
  invalid_request: false,
  unauthorized: false,
  forbidden: false,
  unknown_appid: false,
  route_not_found: false,
  method_not_allowed: false,
  refresh_rejected: true,
  wechat_credentials_rejected: false,
  wechat_ip_not_whitelisted: false,
  wechat_ip_confirmation_required: false,
  wechat_rejected: false,
  wechat_bad_response: true,
  wechat_quota_exhausted: false,
  wechat_rate_limited: true,
  wechat_unavailable: true,
  wechat_timeout: true,
  refresh_in_progress: true,
  cache_unavailable: true,
  secrets_unavailable: true,
  config_invalid: false,
  internal_error: false,
};

/** A code of the service's error body. */
export type ServiceErrorCode = keyof typeof SERVICE_ERROR_CODES;

/** The codes the client itself raises (the service never sends these), each with its retryability. */
export const CLIENT_ERROR_CODES: {
  readonly invalid_argument: false;
  readonly service_bad_response: false;
  readonly service_unreachable: true;
  readonly service_refused: false;
  readonly deadline_exceeded: true;
  readonly dependency_missing: false;
  readonly unknown_service_code: false;
} = {
  /** The caller passed something the service would reject (an appid, a URL, a ticket type…). */
  invalid_argument: false,
  /** The service answered with something that is not one of its bodies. */
  service_bad_response: false,
  /** The service could not be reached or failed without an answer of its own (network, 5xx, Lambda throttled). */
  service_unreachable: true,
  /** The transport refused the call before the service saw it (HTTP 4xx without a body, Lambda access denied). */
  service_refused: false,
  /** The call's deadline passed before the service answered. */
  deadline_exceeded: true,
  /** An optional package the feature needs is not installed (`@aws-sdk/client-lambda`, Powertools Parameters). */
  dependency_missing: false,
  /** The service answered an error body with a code this client does not know (a newer service). */
  unknown_service_code: false,
};

/** A code the client raises itself. */
export type ClientErrorCode = keyof typeof CLIENT_ERROR_CODES;

/** Every code a {@link TokenClientError} can carry: the service's catalogue plus the client's own. */
export type TokenClientErrorCode = ServiceErrorCode | ClientErrorCode;

/** Options of {@link TokenClientError}. */
export interface TokenClientErrorOptions {
  /** Defaults to the code's own retryability. */
  retryable?: boolean;
  /** WeChat's errcode, when the service reported one. */
  errcode?: number;
  /** The HTTP status the service or the transport answered, when there was one. */
  status?: number;
  /** The service's code when it is not in this client's catalogue (`unknown_service_code`). */
  serviceCode?: string;
  cause?: unknown;
}

/** A failed call of the token service, with a stable `code`. */
export class TokenClientError extends Error {
  override readonly name = 'TokenClientError';
  readonly code: TokenClientErrorCode;
  /** Whether the same call may succeed later (the service's own verdict for its codes). */
  readonly retryable: boolean;
  /** WeChat's errcode, when the service reported one. */
  readonly errcode: number | undefined;
  /** The HTTP status, when the call went over HTTP and got one. */
  readonly status: number | undefined;
  /** The raw code of an `unknown_service_code` error. */
  readonly serviceCode: string | undefined;

  constructor(code: TokenClientErrorCode, message: string, options: TokenClientErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.retryable = options.retryable ?? defaultRetryable(code);
    this.errcode = options.errcode;
    this.status = options.status;
    this.serviceCode = options.serviceCode;
  }
}

function defaultRetryable(code: TokenClientErrorCode): boolean {
  if (Object.hasOwn(CLIENT_ERROR_CODES, code)) return CLIENT_ERROR_CODES[code as ClientErrorCode];
  return SERVICE_ERROR_CODES[code as ServiceErrorCode] ?? false;
}

/** Whether `code` is one of the service's codes. */
export function isServiceErrorCode(code: string): code is ServiceErrorCode {
  return Object.hasOwn(SERVICE_ERROR_CODES, code);
}
