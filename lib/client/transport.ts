/**
 * The channel between a consumer and the service: direct invoke (invoke-transport.ts) or API Gateway
 * (http-transport.ts). A transport moves one request and returns the service's JSON body — a success
 * body or `{error}`, both checked by the client — and turns only what happens *around* the service
 * (network, HTTP gateway, Lambda) into a {@link TokenClientError}. It never retries: the client does,
 * inside the call's deadline. This module holds types only.
 */
import type { ServiceRequest } from './protocol.ts';

/** The time one attempt may take. */
export interface TransportCall {
  /** Epoch ms: the attempt must be over by then. */
  deadlineAtMs: number;
  /** Aborts at the deadline; pass it on to the HTTP or Lambda call. */
  signal: AbortSignal;
}

/**
 * One request to the service. Resolves with the parsed JSON body the service answered, whatever it
 * is (the client validates it); rejects with a `TokenClientError` — `service_unreachable`,
 * `service_refused`, `service_bad_response`, `deadline_exceeded` or `dependency_missing` — when
 * there is no body of the service's.
 */
export interface TokenTransport {
  send(request: ServiceRequest, call: TransportCall): Promise<unknown>;
}
