/** JS-SDK signatures checked independently of the service's code: the official algorithm, spelled out. */
import { createHash } from 'node:crypto';
import type { WeChatSimulator } from '../../local/stand-ins/wechat-simulator.ts';

/** The `wx.config` object the service answers `jssdk_config` with. */
export type JssdkConfig = { appId: string; timestamp: number; nonceStr: string; signature: string };

export function sign(ticket: string, config: JssdkConfig, url: string): string {
  return createHash('sha1')
    .update(`jsapi_ticket=${ticket}&noncestr=${config.nonceStr}&timestamp=${config.timestamp}&url=${url}`)
    .digest('hex');
}

/** The jsapi ticket of `appid` the signature was made with, among those the simulator issued. */
export function signedWith(
  sim: WeChatSimulator,
  appid: string,
  config: JssdkConfig,
  url: string,
): string | undefined {
  return sim.ticketsIssued(appid, 'jsapi').find((t) => sign(t.ticket, config, url) === config.signature)
    ?.ticket;
}
