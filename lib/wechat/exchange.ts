/**
 * One HTTP exchange with WeChat or WeCom, and reading what came back: the attempt classifies every
 * outcome (retryable or not, ambiguous or not) for the client's retry loop (client.ts), and the
 * parsers validate an answer before anything of it is used.
 */
import type { ApiEndpoint, Grant } from '../domain.ts';
import { ServiceError } from '../errors.ts';
import type { HttpOutcome, HttpRequest, HttpTransport } from './transport.ts';

const MAX_BODY_BYTES = 64 * 1024;
/** WeChat says to reserve 512 characters; accept generously more, never unbounded. */
const MAX_CREDENTIAL_LENGTH = 2048;

/** A request as the endpoint methods build it; the attempt adds its timeout and the body cap. */
export type EndpointRequest = Omit<HttpRequest, 'timeoutMs' | 'maxBodyBytes'>;

/** One attempt: the answer's JSON object, or a typed error (RetryableFailure when worth another). */
export async function attemptOnce(
  transport: HttpTransport,
  endpoint: ApiEndpoint,
  appid: string,
  request: EndpointRequest,
  timeoutMs: number,
): Promise<Record<string, unknown>> {
  let outcome: HttpOutcome;
  try {
    outcome = await transport.send({ ...request, timeoutMs, maxBodyBytes: MAX_BODY_BYTES });
  } catch (err) {
    // A transport classifies network failures itself; anything thrown is unexplained, so WeChat
    // may have seen the request.
    outcome = { kind: 'interrupted', code: errorCode(err) };
  }
  switch (outcome.kind) {
    case 'timeout':
      throw new RetryableFailure(timeoutError(endpoint, appid), true);
    case 'not_sent':
    case 'interrupted':
      // Never the URL or the raw message: the classic URL carries the AppSecret.
      throw new RetryableFailure(
        new ServiceError(
          'wechat_unavailable',
          outcome.kind === 'not_sent'
            ? `WeChat ${endpoint} could not be reached (${outcome.code}); retry shortly`
            : `WeChat ${endpoint} connection failed before a complete answer (${outcome.code}); retry shortly`,
          { cause: outcome.code },
        ),
        outcome.kind === 'interrupted',
      );
    case 'too_large':
      throw new ServiceError(
        'wechat_bad_response',
        `WeChat ${endpoint} answered HTTP ${outcome.status} with a body over ${MAX_BODY_BYTES} bytes`,
      );
  }
  const { status, text } = outcome;
  if (status >= 500) {
    throw new RetryableFailure(
      new ServiceError('wechat_unavailable', `WeChat ${endpoint} answered HTTP ${status}; retry shortly`),
      // A gateway error says nothing about whether the backend issued a token.
      true,
    );
  }
  if (status !== 200 || Buffer.byteLength(text, 'utf8') > MAX_BODY_BYTES) {
    throw new ServiceError(
      'wechat_bad_response',
      `WeChat ${endpoint} answered HTTP ${status} with an unexpected body`,
    );
  }
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw new ServiceError('wechat_bad_response', `WeChat ${endpoint} answered with a body that is not JSON`);
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new ServiceError(
      'wechat_bad_response',
      `WeChat ${endpoint} answered with JSON that is not an object`,
    );
  }
  return body as Record<string, unknown>;
}

export class RetryableFailure extends Error {
  /** `ambiguous`: WeChat may have processed the request (see AmbiguousUpstreamError). */
  constructor(
    readonly error: ServiceError,
    readonly ambiguous: boolean,
  ) {
    super(error.message);
  }
}

export function parseGrant(
  endpoint: ApiEndpoint,
  appid: string,
  body: Record<string, unknown>,
  field: string,
): Grant {
  const value = body[field];
  const expiresIn = body.expires_in;
  if (
    typeof value !== 'string' ||
    value.length === 0 ||
    value.length > MAX_CREDENTIAL_LENGTH ||
    !/^[\x21-\x7e]+$/.test(value)
  ) {
    throw new ServiceError(
      'wechat_bad_response',
      `WeChat ${endpoint} answered for appid ${appid} without a usable ${field}`,
    );
  }
  if (typeof expiresIn !== 'number' || !Number.isInteger(expiresIn) || expiresIn < 1 || expiresIn > 86_400) {
    throw new ServiceError(
      'wechat_bad_response',
      `WeChat ${endpoint} answered for appid ${appid} with expires_in that is not a whole number of seconds from 1 to 86400`,
    );
  }
  return { value, expiresInSeconds: expiresIn };
}

export function timeoutError(endpoint: ApiEndpoint, appid: string): ServiceError {
  return new ServiceError(
    'wechat_timeout',
    `WeChat ${endpoint} did not answer for appid ${appid} within the time this request had left; retry`,
  );
}

/** Removes every occurrence of the given secrets (AppSecret, access token) and bounds the length. */
export function scrub(text: string, secrets: string[]): string {
  let out = text;
  for (const secret of secrets) if (secret.length > 0) out = out.split(secret).join('[redacted]');
  // biome-ignore lint/suspicious/noControlCharactersInRegex: stripping control characters is the point
  return out.replace(/[\x00-\x1f\x7f]/g, ' ').slice(0, 200);
}

/** An error's code (`ERR_MODULE_NOT_FOUND`, `ECONNRESET`, …) and never its message, which may name a URL. */
export function errorCode(err: unknown): string {
  const code = (err as { code?: unknown } | null | undefined)?.code;
  return typeof code === 'string' && /^[A-Z][A-Z0-9_]{1,39}$/.test(code) ? code : 'UNKNOWN';
}
