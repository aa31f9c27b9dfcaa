/**
 * The three WeChat SDKs, wired by their adapters, each with one business call against the
 * simulator's token-checking endpoint (`GET /cgi-bin/get_api_domain_ip`). The simulator has no
 * `getcallbackip`, so the call is added the way each SDK adds an API — co-wechat-api's and
 * wechat-api's `API.mixin`, written exactly like their own `getIp` — and node-easywechat's generic
 * client. Each SDK is pointed at the simulator's base URL.
 */
import CoWechatApi from 'co-wechat-api';
import { OfficialAccount } from 'node-easywechat';
import WechatApi from 'wechat-api';
import { wrapper } from 'wechat-api/lib/util.js';
import { coWechatApi } from '../../../lib/client/co-wechat-api.ts';
import { easyWechat } from '../../../lib/client/easy-wechat.ts';
import type { TokenClient } from '../../../lib/client/token-client.ts';
import { wechatApi } from '../../../lib/client/wechat-api.ts';

type Callback = (err: unknown, data?: unknown) => void;

let mixedIn = false;

function addBusinessMethods(): void {
  if (mixedIn) return;
  mixedIn = true;
  CoWechatApi.mixin({
    getApiDomainIp: async function (this: {
      prefix: string;
      ensureAccessToken(): Promise<{ accessToken: string }>;
      request(url: string, opts: object): Promise<unknown>;
    }) {
      const { accessToken } = await this.ensureAccessToken();
      return this.request(`${this.prefix}get_api_domain_ip?access_token=${accessToken}`, {
        dataType: 'json',
      });
    },
  });
  WechatApi.mixin({
    getApiDomainIp: function (
      this: { preRequest(method: unknown, args: IArguments): void; _getApiDomainIp: unknown },
      _callback: Callback,
    ) {
      // biome-ignore lint/complexity/noArguments: wechat-api's preRequest takes the arguments object
      this.preRequest(this._getApiDomainIp, arguments);
    },
    _getApiDomainIp: function (
      this: {
        endpoint: string;
        token: { accessToken: string };
        request(url: string, opts: object, callback: Callback): void;
      },
      callback: Callback,
    ) {
      const url = `${this.endpoint}/cgi-bin/get_api_domain_ip?access_token=${this.token.accessToken}`;
      this.request(url, { dataType: 'json' }, wrapper(callback));
    },
  });
}

/** What a business call answers when WeChat accepts the token. */
export interface DomainIps {
  ip_list: string[];
}

/** One SDK wired by its adapter: `call()` is one business call. */
export interface WiredSdk {
  name: 'co-wechat-api' | 'wechat-api' | 'node-easywechat';
  call(): Promise<DomainIps>;
  /** The SDK's own JS-SDK config helper. */
  jsConfig(url: string): Promise<Record<string, unknown>>;
}

/** Which SDK, wired to `client` and pointed at the simulator. */
export type SdkName = WiredSdk['name'];
export const SDK_NAMES: SdkName[] = ['co-wechat-api', 'wechat-api', 'node-easywechat'];

/** The adapters to wire with: the sources by default, or the built package's (dist/client.*). */
export interface Adapters {
  coWechatApi: typeof coWechatApi;
  wechatApi: typeof wechatApi;
  easyWechat: typeof easyWechat;
}

const SOURCE_ADAPTERS: Adapters = { coWechatApi, wechatApi, easyWechat };

export function wireSdk(
  name: SdkName,
  client: TokenClient,
  wechatBaseUrl: string,
  adapters: Adapters = SOURCE_ADAPTERS,
): WiredSdk {
  addBusinessMethods();
  switch (name) {
    case 'co-wechat-api': {
      const api = adapters.coWechatApi(CoWechatApi, client) as unknown as ReturnType<typeof coWechatApi> & {
        prefix: string;
        getApiDomainIp(): Promise<DomainIps>;
      };
      api.prefix = `${wechatBaseUrl}/cgi-bin/`;
      return {
        name,
        call: () => api.getApiDomainIp(),
        jsConfig: (url) =>
          api.getJsConfig({ url, jsApiList: ['chooseImage'] }) as Promise<Record<string, unknown>>,
      };
    }
    case 'wechat-api': {
      const api = adapters.wechatApi(WechatApi, client) as unknown as ReturnType<typeof wechatApi> & {
        endpoint: string;
        getApiDomainIp(callback: Callback): void;
      };
      api.endpoint = wechatBaseUrl;
      const promised = <T>(run: (callback: Callback) => void) =>
        new Promise<T>((resolve, reject) => run((err, data) => (err ? reject(err) : resolve(data as T))));
      return {
        name,
        call: () => promised<DomainIps>((cb) => api.getApiDomainIp(cb)),
        jsConfig: (url) =>
          promised<Record<string, unknown>>((cb) => api.getJsConfig({ url, jsApiList: ['chooseImage'] }, cb)),
      };
    }
    case 'node-easywechat': {
      const app = adapters.easyWechat(
        new OfficialAccount({
          app_id: client.appid,
          secret: 'unused',
          token: '',
          aes_key: '',
          http: { baseURL: `${wechatBaseUrl}/` },
        }),
        client,
      );
      return {
        name,
        call: async () => {
          const response = await app.getClient().get('cgi-bin/get_api_domain_ip');
          const body = response.toObject() as DomainIps & { errcode?: number; errmsg?: string };
          if (body.errcode) {
            throw Object.assign(new Error(`WeChat errcode ${body.errcode}`), { code: body.errcode });
          }
          return body;
        },
        jsConfig: (url) =>
          app.getUtils().buildJsSdkConfig(url, ['chooseImage']) as Promise<Record<string, unknown>>,
      };
    }
  }
}
