/**
 * The service as a Powertools for AWS Lambda Parameters provider: `provider.get(appid, { maxAge,
 * forceFetch })`, with Powertools' own cache in front of a {@link TokenClient} per appid.
 *
 * Powertools keeps a value for `maxAge` seconds (default 5, or POWERTOOLS_PARAMETERS_MAX_AGE) whatever
 * the value is; a token may not be kept past its `expires_at`, so this provider caps every entry at
 * what the client still promises for that token. `forceFetch` skips both caches and asks the service
 * (which answers its own current token: it never makes the service call WeChat). Failures reach the
 * caller as Powertools' `GetParameterError`, with the client's `TokenClientError` as its `cause`.
 *
 * `@aws-lambda-powertools/parameters` is an optional peer, loaded when the first provider is built:
 * loading it takes ≈ 60 ms, which a consumer that never builds one should not pay at start-up.
 */
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import type { ClientClock } from './clock.ts';
import { TokenClientError } from './errors.ts';
import { TokenClient } from './token-client.ts';
import type { TokenTransport } from './transport.ts';

/** Options of {@link TokenProvider}. */
export interface TokenProviderOptions {
  /** How to reach the service: `invokeTransport(…)` or `httpTransport(…)`. */
  transport: TokenTransport;
  /** Time bound of each call to the service, retries included, in ms (default 10 000). */
  deadlineMs?: number;
  /** Time and chance (tests). */
  clock?: ClientClock;
}

/** Options of {@link TokenProvider.get}: Powertools' own. */
export interface TokenProviderGetOptions {
  /** Seconds Powertools may keep the token (default 5); never longer than the token's promise. */
  maxAge?: number;
  /** Skip the caches and ask the service. */
  forceFetch?: boolean;
  /** Throw `ParameterNotFoundError` instead of answering undefined (tokens are never missing). */
  throwOnMissing?: boolean;
}

/** A Powertools Parameters provider of access tokens; it is an instance of Powertools' `BaseProvider`. */
export interface TokenProvider {
  /** The access token of `appid` (a configured WeChat appid). */
  get(appid: string, options?: TokenProviderGetOptions): Promise<string | undefined>;
  /** Not supported: rejects (a token is asked for by appid). */
  getMultiple(path: string, options?: unknown): Promise<unknown>;
  /** Empties Powertools' cache (the clients keep their own until each token's `expires_at`). */
  clearCache(): void;
}

interface BaseProviderModule {
  BaseProvider: abstract new (
    options: Record<string, unknown>,
  ) => {
    get(name: string, options?: unknown): Promise<unknown>;
    addToCache(key: string, value: unknown, maxAge: number): void;
    clearCache(): void;
  };
}

const BASE_MODULE = '@aws-lambda-powertools/parameters/base';

let providerClass: (new (options: TokenProviderOptions) => TokenProvider) | undefined;

/**
 * A Powertools Parameters provider of access tokens (a `BaseProvider` subclass):
 * `const tokens = new TokenProvider({ transport }); await tokens.get('wx…', { maxAge: 60 })`.
 * Throws `dependency_missing` when `@aws-lambda-powertools/parameters` is not installed.
 */
// biome-ignore lint/suspicious/noUnsafeDeclarationMerging: the interface declares what the lazily built subclass has
export class TokenProvider {
  constructor(options: TokenProviderOptions) {
    // A constructor may answer another object: here an instance of the BaseProvider subclass, built on
    // first use so that Powertools loads only for consumers that use it.
    // biome-ignore lint/correctness/noConstructorReturn: see above
    return new (buildProviderClass())(options);
  }
}
// `instanceof TokenProvider` holds for what the constructor answers.
Object.defineProperty(TokenProvider, Symbol.hasInstance, {
  value: (value: unknown): boolean => providerClass !== undefined && value instanceof providerClass,
});

function buildProviderClass(): new (options: TokenProviderOptions) => TokenProvider {
  if (providerClass) return providerClass;
  let module: BaseProviderModule;
  try {
    module = loadBaseProvider();
  } catch (err) {
    throw new TokenClientError(
      'dependency_missing',
      'TokenProvider needs @aws-lambda-powertools/parameters (npm install @aws-lambda-powertools/parameters)',
      { cause: err },
    );
  }

  class ServiceTokenProvider extends module.BaseProvider implements TokenProvider {
    readonly #options: TokenProviderOptions;
    readonly #clients = new Map<string, TokenClient>();
    /** The token each cache key got last, so that its entry is capped at that token's promise. */
    readonly #fetched = new Map<string, { client: TokenClient; token: string }>();

    constructor(options: TokenProviderOptions) {
      super({});
      if (typeof options?.transport?.send !== 'function') {
        throw new TokenClientError(
          'invalid_argument',
          'TokenProvider: transport must be invokeTransport(…) or httpTransport(…)',
        );
      }
      this.#options = options;
    }

    override get(appid: string, options?: TokenProviderGetOptions): Promise<string | undefined> {
      return super.get(appid, options) as Promise<string | undefined>;
    }

    getMultiple(_path: string, _options?: unknown): Promise<unknown> {
      return Promise.reject(
        new TokenClientError(
          'invalid_argument',
          'TokenProvider.getMultiple: ask for one appid at a time with get',
        ),
      );
    }

    protected async _get(appid: string, options?: TokenProviderGetOptions): Promise<string> {
      const client = this.#client(appid);
      const token = await client.getToken({ forceFetch: options?.forceFetch === true });
      // BaseProvider keys its cache by [name, transform].toString().
      this.#fetched.set(appid, { client, token });
      return token;
    }

    protected async _getMultiple(): Promise<Record<string, unknown> | undefined> {
      throw new TokenClientError('invalid_argument', 'TokenProvider.getMultiple is not supported');
    }

    override addToCache(key: string, value: unknown, maxAge: number): void {
      const comma = key.indexOf(',');
      const fetched = this.#fetched.get(comma === -1 ? key : key.slice(0, comma));
      const promisedSeconds =
        fetched !== undefined && fetched.token === value
          ? Math.floor(fetched.client.validForMs(fetched.token) / 1000)
          : 0;
      super.addToCache(key, value, Math.min(maxAge, promisedSeconds));
    }

    #client(appid: string): TokenClient {
      let client = this.#clients.get(appid);
      if (!client) {
        client = new TokenClient({
          appid,
          transport: this.#options.transport,
          ...(this.#options.deadlineMs !== undefined ? { deadlineMs: this.#options.deadlineMs } : {}),
          ...(this.#options.clock !== undefined ? { clock: this.#options.clock } : {}),
        });
        this.#clients.set(appid, client);
      }
      return client;
    }
  }
  providerClass = ServiceTokenProvider;
  return providerClass;
}

/**
 * Powertools' `base` module, the same copy the consumer imports: its CommonJS build for the CommonJS
 * client, its ES build for the ES client (Node 22 can require an ES module) — two copies would make
 * `instanceof BaseProvider` and `instanceof GetParameterError` false.
 */
function loadBaseProvider(): BaseProviderModule {
  const load = createRequire(import.meta.url);
  const resolve = (import.meta as { resolve?: (specifier: string) => string }).resolve;
  if (typeof resolve === 'function') {
    try {
      return load(fileURLToPath(resolve(BASE_MODULE))) as BaseProviderModule;
    } catch {
      // Not resolvable as an ES module here: the CommonJS build will do.
    }
  }
  return load(BASE_MODULE) as BaseProviderModule;
}
