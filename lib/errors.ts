/**
 * The closed set of failures this service reports. Every channel (direct invoke, API Gateway v1/v2,
 * the schedule) uses these codes; each code has exactly one HTTP status and one retryability.
 *
 * Messages say what failed and what to do. They never contain a secret, a client key or a token:
 * callers of {@link ServiceError} pass only appids, errcodes, IPs and configuration names.
 */
export const ERROR_CATALOGUE = {
  /** Malformed input: the message names the field and the expected shape. */
  invalid_request: { status: 400, retryable: false },
  /** No client key, an unknown key, or an Authorization header that is not `Bearer <key>`. */
  unauthorized: { status: 401, retryable: false },
  /** The client key is valid but not scoped to this appid. */
  forbidden: { status: 403, retryable: false },
  /** The appid has no entry in the credentials secret. */
  unknown_appid: { status: 404, retryable: false },
  /** No such HTTP route. */
  route_not_found: { status: 404, retryable: false },
  /** The route exists with another method. */
  method_not_allowed: { status: 405, retryable: false },
  /** A passive refresh was refused by the refresh budget or WeChat's force-refresh spacing. */
  refresh_rejected: { status: 429, retryable: true },
  /** WeChat rejected the appid/secret (40001 at the token endpoint, 40013, 40125, 40243, …). */
  wechat_credentials_rejected: { status: 502, retryable: false },
  /** WeChat refused the caller's egress IP (40164, 61004). */
  wechat_ip_not_whitelisted: { status: 502, retryable: false },
  /** WeChat wants an administrator to confirm this egress IP (89501, 89503, 89506, 89507). */
  wechat_ip_confirmation_required: { status: 502, retryable: false },
  /** WeChat refused the call for a reason that is not transient (48001, 50002, unknown errcodes). */
  wechat_rejected: { status: 502, retryable: false },
  /** WeChat answered with something that is not a valid response for the endpoint. */
  wechat_bad_response: { status: 502, retryable: true },
  /** The daily quota of the token or ticket endpoint is used up (45009). */
  wechat_quota_exhausted: { status: 503, retryable: false },
  /** WeChat's per-minute frequency limit (45011). */
  wechat_rate_limited: { status: 503, retryable: true },
  /** WeChat is busy (-1), answered 5xx, or could not be reached. */
  wechat_unavailable: { status: 503, retryable: true },
  /** WeChat did not answer within the time this invocation had left. */
  wechat_timeout: { status: 503, retryable: true },
  /** A peer instance holds the refresh lock and did not finish within the time this invocation had left. */
  refresh_in_progress: { status: 503, retryable: true },
  /** Memcached is unreachable and no valid token could be served without it. */
  cache_unavailable: { status: 503, retryable: true },
  /** Secrets Manager could not be read (throttled, unreachable, access denied). */
  secrets_unavailable: { status: 503, retryable: true },
  /** The deployment's configuration or the credentials secret is invalid: the message names what to fix. */
  config_invalid: { status: 500, retryable: false },
  /** A bug: the message is generic; details are in the log. */
  internal_error: { status: 500, retryable: false },
} as const satisfies Record<string, { status: number; retryable: boolean }>;

export type ErrorCode = keyof typeof ERROR_CATALOGUE;

/** The error body of every channel: `{"error":{code,message,retryable,errcode?}}`. */
export interface ErrorBody {
  error: { code: ErrorCode; message: string; retryable: boolean; errcode?: number };
}

/** The one error class of the service. `cause` keeps the underlying error for logs, never for callers. */
export class ServiceError extends Error {
  override readonly name = 'ServiceError';
  readonly code: ErrorCode;
  /** WeChat's errcode, when WeChat gave one. */
  readonly errcode: number | undefined;

  constructor(code: ErrorCode, message: string, options: { errcode?: number; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.errcode = options.errcode;
  }

  get status(): number {
    return ERROR_CATALOGUE[this.code].status;
  }

  get retryable(): boolean {
    return ERROR_CATALOGUE[this.code].retryable;
  }

  toBody(): ErrorBody {
    const error: ErrorBody['error'] = { code: this.code, message: this.message, retryable: this.retryable };
    if (this.errcode !== undefined) error.errcode = this.errcode;
    return { error };
  }
}

/** Any thrown value as a ServiceError; anything unexpected becomes `internal_error` with a generic message. */
export function toServiceError(err: unknown): ServiceError {
  if (err instanceof ServiceError) return err;
  return new ServiceError('internal_error', 'unexpected internal error; see the service log', { cause: err });
}
