/** The options of {@link TokenClient} (token-client.ts) and of its calls. */
import type { ClientClock } from './clock.ts';
import type { TokenTransport } from './transport.ts';

/** Options of {@link TokenClient}. */
export interface TokenClientOptions {
  /** The WeChat appid whose tokens this client gets. */
  appid: string;
  /** How to reach the service: {@link invokeTransport} or {@link httpTransport}. */
  transport: TokenTransport;
  /** Default time bound of each call, retries included, in milliseconds (default 10 000). */
  deadlineMs?: number;
  /** Time and chance (tests). */
  clock?: ClientClock;
}

/** Options of every call. */
export interface CallOptions {
  /** This call's time bound in milliseconds, retries included (default: the client's). */
  deadlineMs?: number;
}

/** Options of {@link TokenClient.getToken}. */
export interface GetTokenOptions extends CallOptions {
  /**
   * Ask the service even while a cached token is valid (it answers its own current token; this never
   * makes it call WeChat).
   */
  forceFetch?: boolean;
}

/** Options of {@link TokenClient.withToken}. */
export interface WithTokenOptions extends CallOptions {
  /**
   * WeChat's errcode in what `fn` returned or threw. The default reads `errcode`, or a numeric `code`
   * (what co-wechat-api and wechat-api throw).
   */
  errcodeOf?: (resultOrError: unknown) => number | undefined;
}
