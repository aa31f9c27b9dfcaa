import { describe, expect, it } from 'vitest';
import { invokeTransport, type LambdaClientLike } from '../../../lib/client/invoke-transport.ts';
import { APPID, clientFailure } from './fakes.ts';

const encode = (value: unknown) => new TextEncoder().encode(JSON.stringify(value));

function fakeLambda(answer: () => unknown) {
  const inputs: { FunctionName: string; payload: unknown; signal: AbortSignal | undefined }[] = [];
  const client: LambdaClientLike = {
    async send(command, options) {
      const input = (command as { input: { FunctionName: string; Payload: Uint8Array } }).input;
      inputs.push({
        FunctionName: input.FunctionName,
        payload: JSON.parse(new TextDecoder().decode(input.Payload)),
        signal: options?.abortSignal,
      });
      return answer();
    },
  };
  return { client, inputs };
}

const call = () => ({ deadlineAtMs: Date.now() + 1000, signal: new AbortController().signal });
const sdkError = (name: string, status?: number) =>
  Object.assign(new Error(`${name} happened`), { name, $metadata: status ? { httpStatusCode: status } : {} });

describe('invokeTransport', () => {
  it('invokes the function with the request as its event and answers the payload', async () => {
    const { client, inputs } = fakeLambda(() => ({
      StatusCode: 200,
      Payload: encode({ access_token: 't' }),
    }));
    const transport = invokeTransport({ functionName: 'wechat-token-service-prod-token', client });
    const c = call();
    const body = await transport.send(
      { action: 'refresh_token', appid: APPID, invalid_token: 'tok-dead' },
      c,
    );
    expect(body).toEqual({ access_token: 't' });
    expect(inputs).toEqual([
      {
        FunctionName: 'wechat-token-service-prod-token',
        payload: { action: 'refresh_token', appid: APPID, invalid_token: 'tok-dead' },
        signal: c.signal,
      },
    ]);
  });

  it("answers the service's error body as it is (the client maps it)", async () => {
    const error = { error: { code: 'unknown_appid', message: 'm', retryable: false } };
    const { client } = fakeLambda(() => ({ StatusCode: 200, Payload: encode(error) }));
    const transport = invokeTransport({ functionName: 'fn', client });
    expect(await transport.send({ action: 'get_token', appid: APPID }, call())).toEqual(error);
  });

  it('a crashed or timed-out function is service_unreachable, naming its error type', async () => {
    const { client } = fakeLambda(() => ({
      StatusCode: 200,
      FunctionError: 'Unhandled',
      Payload: encode({ errorType: 'Sandbox.Timedout', errorMessage: 'Task timed out after 10.00 seconds' }),
    }));
    const err = await clientFailure(
      invokeTransport({ functionName: 'fn', client }).send({ action: 'get_token', appid: APPID }, call()),
    );
    expect(err).toMatchObject({ code: 'service_unreachable', retryable: true });
    expect(err.message).toContain('Unhandled, Sandbox.Timedout');
  });

  it.each([
    ['TooManyRequestsException', 429, 'service_unreachable', true],
    ['ServiceException', 500, 'service_unreachable', true],
    ['ResourceNotReadyException', 502, 'service_unreachable', true],
    ['AccessDeniedException', 403, 'service_refused', false],
    ['ResourceNotFoundException', 404, 'service_refused', false],
    ['CredentialsProviderError', undefined, 'service_refused', false],
    ['Error', undefined, 'service_refused', false],
  ])('Lambda error %s (HTTP %s): %s', async (name, status, code, retryable) => {
    const { client } = fakeLambda(() => {
      throw sdkError(name, status);
    });
    const err = await clientFailure(
      invokeTransport({ functionName: 'fn', client }).send({ action: 'get_token', appid: APPID }, call()),
    );
    expect(err).toMatchObject({ code, retryable });
    expect(err.message).toContain(name);
  });

  it.each(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT'])(
    'a network error %s is service_unreachable',
    async (code) => {
      const { client } = fakeLambda(() => {
        throw Object.assign(new Error(`connect ${code}`), { code });
      });
      const err = await clientFailure(
        invokeTransport({ functionName: 'fn', client }).send({ action: 'get_token', appid: APPID }, call()),
      );
      expect(err).toMatchObject({ code: 'service_unreachable', retryable: true });
    },
  );

  it('a payload that is not JSON is service_bad_response', async () => {
    const { client } = fakeLambda(() => ({ StatusCode: 200, Payload: new TextEncoder().encode('<html>') }));
    const err = await clientFailure(
      invokeTransport({ functionName: 'fn', client }).send({ action: 'get_token', appid: APPID }, call()),
    );
    expect(err.code).toBe('service_bad_response');
  });

  it('a call aborted at the deadline is deadline_exceeded', async () => {
    const controller = new AbortController();
    const { client } = fakeLambda(() => {
      controller.abort();
      throw Object.assign(new Error('aborted'), { name: 'AbortError' });
    });
    const err = await clientFailure(
      invokeTransport({ functionName: 'fn', client }).send(
        { action: 'get_token', appid: APPID },
        { deadlineAtMs: 0, signal: controller.signal },
      ),
    );
    expect(err.code).toBe('deadline_exceeded');
  });

  it('refuses a function name that is not a Lambda name or ARN', () => {
    expect(() => invokeTransport({ functionName: 'has space' })).toThrow(
      expect.objectContaining({ code: 'invalid_argument' }),
    );
  });
});
