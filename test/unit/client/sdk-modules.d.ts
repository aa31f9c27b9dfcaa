// The two callback/promise WeChat SDKs ship no type declarations; the tests use them through the
// adapters' structural types.
declare module 'co-wechat-api' {
  const API: import('../../../lib/client/co-wechat-api.ts').CoWechatApiClass<
    import('../../../lib/client/co-wechat-api.ts').CoWechatApiLike & Record<string, unknown>
  > & { mixin(methods: Record<string, unknown>): void };
  export default API;
}

declare module 'wechat-api' {
  const API: import('../../../lib/client/wechat-api.ts').WechatApiClass<
    import('../../../lib/client/wechat-api.ts').WechatApiLike & Record<string, unknown>
  > & { mixin(methods: Record<string, unknown>): void };
  export default API;
}

declare module 'wechat-api/lib/util.js' {
  export function wrapper(
    callback: (err: unknown, data?: unknown, res?: unknown) => void,
  ): (err: unknown, data?: unknown, res?: unknown) => void;
}
