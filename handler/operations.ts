import { jsapiSignature, newNonce } from '../lib/jssdk/signature.ts';
import type { CallContext, Served, TokenService } from '../lib/token/service.ts';
import type { Request } from './input.ts';

/** The token body: WeChat's own shape plus an absolute expiry. */
export interface TokenBody {
  access_token: string;
  expires_in: number;
  expires_at: number;
}
export interface TicketBody {
  ticket: string;
  expires_in: number;
  expires_at: number;
}
export interface JssdkConfigBody {
  appId: string;
  timestamp: number;
  nonceStr: string;
  signature: string;
}

export interface OperationResult {
  body: TokenBody | TicketBody | JssdkConfigBody;
  served: Served;
}

/** Runs one validated operation against the service. The ticket leaves only through get_ticket. */
export async function runOperation(
  service: TokenService,
  request: Request,
  ctx: CallContext,
  nowMs: () => number,
): Promise<OperationResult> {
  switch (request.operation) {
    case 'get_token': {
      const served = await service.getAccessToken(request.appid, ctx);
      return { body: tokenBody(served), served };
    }
    case 'refresh_token': {
      const served = await service.refreshAccessToken(request.appid, request.invalidToken, ctx);
      return { body: tokenBody(served), served };
    }
    case 'get_ticket': {
      const served = await service.getTicket(request.appid, request.type, ctx);
      return {
        body: { ticket: served.value, expires_in: served.expiresIn, expires_at: served.expiresAt },
        served,
      };
    }
    case 'jssdk_config': {
      const served = await service.getTicket(request.appid, 'jsapi', ctx);
      const timestamp = Math.floor(nowMs() / 1000);
      const nonceStr = newNonce();
      const signature = jsapiSignature(served.value, nonceStr, timestamp, request.url);
      return { body: { appId: request.appid, timestamp, nonceStr, signature }, served };
    }
  }
}

function tokenBody(served: Served): TokenBody {
  return { access_token: served.value, expires_in: served.expiresIn, expires_at: served.expiresAt };
}
