/**
 * The service by direct Lambda invoke (authorised by IAM, `lambda:InvokeFunction`): the event is the
 * request and the function's result is the body. `@aws-sdk/client-lambda` is an optional peer,
 * loaded on the first call only — the nodejs22.x runtime ships it, and a process that uses the HTTP
 * transport never pays the ≈ 0.3 s it takes to load.
 */
import { TokenClientError } from './errors.ts';
import type { ServiceRequest } from './protocol.ts';
import type { TokenTransport, TransportCall } from './transport.ts';

/** What the transport needs of a `LambdaClient` (structural: any v3 client instance fits). */
export interface LambdaClientLike {
  send(command: never, options?: { abortSignal?: AbortSignal }): Promise<unknown>;
}

/** Options of {@link invokeTransport}. */
export interface InvokeTransportOptions {
  /** The service's function: name, ARN or partial ARN, optionally with `:alias`. */
  functionName: string;
  /**
   * Your own `LambdaClient` (region, credentials, endpoint, retries). By default one is created on
   * first use with `maxAttempts: 1`: the token client retries itself, inside its deadline.
   */
  client?: LambdaClientLike;
}

interface LambdaModule {
  LambdaClient: new (config: Record<string, unknown>) => LambdaClientLike;
  InvokeCommand: new (input: { FunctionName: string; Payload: Uint8Array }) => unknown;
}

/** Lambda errors worth another attempt: throttling and the service's own transient failures. */
const RETRYABLE_LAMBDA_ERRORS = new Set([
  'TooManyRequestsException',
  'ServiceException',
  'EC2ThrottledException',
  'ResourceNotReadyException',
  'ResourceConflictException',
  'SubnetIPAddressLimitReachedException',
  'ENILimitReachedException',
]);

let lambdaModule: Promise<LambdaModule> | undefined;

function loadLambdaModule(): Promise<LambdaModule> {
  lambdaModule ??= (import('@aws-sdk/client-lambda') as Promise<LambdaModule>).catch((err: unknown) => {
    lambdaModule = undefined;
    throw new TokenClientError(
      'dependency_missing',
      'invokeTransport needs @aws-sdk/client-lambda: install it (npm install @aws-sdk/client-lambda), ' +
        'or use httpTransport. The nodejs22.x Lambda runtime already provides it.',
      { cause: err },
    );
  });
  return lambdaModule;
}

/**
 * A transport that invokes the service's Lambda function directly. Throws `invalid_argument` for a
 * function name that is not a Lambda name or ARN.
 */
export function invokeTransport(options: InvokeTransportOptions): TokenTransport {
  const functionName = options.functionName;
  if (typeof functionName !== 'string' || !/^[A-Za-z0-9_:.$/-]{1,170}$/.test(functionName)) {
    throw new TokenClientError(
      'invalid_argument',
      'invokeTransport: functionName must be the Lambda function name or ARN of the token service',
    );
  }
  let client: LambdaClientLike | undefined = options.client;
  const encoder = new TextEncoder();
  return {
    async send(request: ServiceRequest, call: TransportCall): Promise<unknown> {
      const sdk = await loadLambdaModule();
      client ??= new sdk.LambdaClient({ maxAttempts: 1 });
      const command = new sdk.InvokeCommand({
        FunctionName: functionName,
        Payload: encoder.encode(JSON.stringify(request)),
      });
      let output: { StatusCode?: unknown; FunctionError?: unknown; Payload?: unknown };
      try {
        output = (await client.send(command as never, { abortSignal: call.signal })) as typeof output;
      } catch (err) {
        throw invokeError(err, request, functionName, call.signal);
      }
      if (typeof output.FunctionError === 'string' && output.FunctionError !== '') {
        // The function crashed or timed out (the service answers expected failures with a body).
        throw new TokenClientError(
          'service_unreachable',
          `the token service function ${functionName} failed on ${request.action} (${output.FunctionError}` +
            `${errorTypeOf(output.Payload)}): see its log`,
        );
      }
      if (!(output.Payload instanceof Uint8Array)) {
        throw new TokenClientError(
          'service_bad_response',
          `the token service function ${functionName} answered ${request.action} without a payload`,
        );
      }
      try {
        return JSON.parse(new TextDecoder().decode(output.Payload));
      } catch {
        throw new TokenClientError(
          'service_bad_response',
          `the token service function ${functionName} answered ${request.action} with a payload that is not JSON`,
        );
      }
    },
  };
}

function invokeError(
  err: unknown,
  request: ServiceRequest,
  functionName: string,
  signal: AbortSignal,
): TokenClientError {
  if (signal.aborted) {
    return new TokenClientError(
      'deadline_exceeded',
      `Lambda Invoke of ${functionName} did not answer ${request.action} before the deadline`,
      { cause: err },
    );
  }
  const e = err as {
    name?: unknown;
    code?: unknown;
    message?: unknown;
    $metadata?: { httpStatusCode?: unknown };
    $retryable?: unknown;
  };
  const name = typeof e?.name === 'string' ? e.name : 'Error';
  const status = typeof e?.$metadata?.httpStatusCode === 'number' ? e.$metadata.httpStatusCode : undefined;
  if (status === undefined && !isNetworkError(e)) {
    // Nothing was sent: the Lambda client itself is not set up (no region, no credentials…).
    const said = typeof e?.message === 'string' ? `: ${e.message.slice(0, 200)}` : '';
    return new TokenClientError(
      'service_refused',
      `the Lambda client could not invoke ${functionName} (${name}${said}); check its region and credentials`,
      { cause: err },
    );
  }
  const retryable =
    RETRYABLE_LAMBDA_ERRORS.has(name) ||
    e?.$retryable !== undefined ||
    status === undefined ||
    status === 429 ||
    status >= 500;
  return new TokenClientError(
    retryable ? 'service_unreachable' : 'service_refused',
    `Lambda Invoke of ${functionName} failed on ${request.action}: ${name}` +
      (name === 'AccessDeniedException' ? ' (the caller needs lambda:InvokeFunction on it)' : ''),
    { cause: err, ...(status !== undefined ? { status } : {}) },
  );
}

/** A connection that failed or timed out on the way (the call may be sent again). */
function isNetworkError(e: { name?: unknown; code?: unknown } | undefined): boolean {
  if (e?.name === 'TimeoutError') return true;
  return typeof e?.code === 'string' && /^(E[A-Z]+|UND_ERR_[A-Z_]+)$/.test(e.code);
}

/** ` errorType`, from a crashed function's payload, when there is one. */
function errorTypeOf(payload: unknown): string {
  if (!(payload instanceof Uint8Array)) return '';
  try {
    const type = (JSON.parse(new TextDecoder().decode(payload)) as { errorType?: unknown }).errorType;
    return typeof type === 'string' && /^[\w.:-]{1,100}$/.test(type) ? `, ${type}` : '';
  } catch {
    return '';
  }
}
