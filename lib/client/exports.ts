/**
 * The `./client` export of the package (built to dist/client.mjs and dist/client.cjs): what a
 * consumer of the service imports. The one module of lib/ that re-exports, because a package entry
 * point has to.
 */

export type { ClientClock } from './clock.ts';
export { type CoWechatApiClass, type CoWechatApiLike, coWechatApi } from './co-wechat-api.ts';
export {
  type EasyWechatAccessToken,
  type EasyWechatAppLike,
  type EasyWechatHttpClientLike,
  type EasyWechatJsApiTicket,
  easyWechat,
} from './easy-wechat.ts';
export {
  CLIENT_ERROR_CODES,
  type ClientErrorCode,
  TokenClientError,
  type TokenClientErrorCode,
  type TokenClientErrorOptions,
} from './errors.ts';
export { type HttpTransportOptions, httpTransport } from './http-transport.ts';
export { type InvokeTransportOptions, invokeTransport, type LambdaClientLike } from './invoke-transport.ts';
export type {
  AgentConfigBody,
  JssdkConfigBody,
  ServiceRequest,
  TicketBody,
  TicketType,
  TokenBody,
} from './protocol.ts';
export {
  type CallOptions,
  type GetTokenOptions,
  TokenClient,
  type TokenClientOptions,
  type WithTokenOptions,
} from './token-client.ts';
export { TokenProvider, type TokenProviderGetOptions, type TokenProviderOptions } from './token-provider.ts';
export type { TokenTransport, TransportCall } from './transport.ts';
export { type WechatApiClass, type WechatApiLike, wechatApi } from './wechat-api.ts';
export { isInvalidTokenErrcode, TOKEN_INVALID_ERRCODES, wechatErrcode } from './wechat-errcode.ts';
