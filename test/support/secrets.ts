/**
 * The secrets every test uses, in one place, so the log check knows what must never be printed.
 * Tokens and tickets are recognised by the simulator's formats (long random strings with its prefixes).
 */
export const TEST_APPID = 'wx0123456789abcdef';
export const TEST_APPID_2 = 'wxfedcba9876543210';
export const TEST_APPID_STABLE = 'wx00000000000000aa';
export const TEST_APPID_UNCONFIGURED = 'wx1111111111111111';
export const TEST_SECRET = 'test-appsecret-0f9e8d7c6b5a4';
export const TEST_SECRET_2 = 'test-appsecret-second-11aa22';
export const TEST_SECRET_STABLE = 'test-appsecret-stable-33bb44';
export const TEST_SECRET_ROTATED = 'test-appsecret-rotated-55cc6';
export const CLIENT_KEY = 'client-key-billing-9a8b7c6d5e4f';
export const CLIENT_KEY_OTHER = 'client-key-other-1a2b3c4d5e6f';

/** WeCom: corp A with two agents, corp B with one (its Secret, sent with corp A's id, is WeCom's 40091). */
export const WECOM_CORP_A = 'ww0a1b2c3d4e5f6071';
export const WECOM_CORP_B = 'wwf0e1d2c3b4a59687';
export const WECOM_APP_A1 = `${WECOM_CORP_A}:1000002`;
export const WECOM_APP_A2 = `${WECOM_CORP_A}:1000003`;
export const WECOM_APP_B1 = `${WECOM_CORP_B}:1000002`;
export const WECOM_SECRET_A1 = 'test-wecom-secret-a1-7f6e5d4c3b2a19';
export const WECOM_SECRET_A2 = 'test-wecom-secret-a2-0a9b8c7d6e5f41';
export const WECOM_SECRET_B1 = 'test-wecom-secret-b1-5c4d3e2f1a0b68';
export const CLIENT_KEY_WECOM = 'client-key-wecom-4d3c2b1a0f9e';
/** The apps the WeCom simulator knows: corp A's two agents and corp B's one. */
export const WECOM_SIMULATOR_APPS = [
  { corpid: WECOM_CORP_A, agentid: '1000002', secret: WECOM_SECRET_A1 },
  { corpid: WECOM_CORP_A, agentid: '1000003', secret: WECOM_SECRET_A2 },
  { corpid: WECOM_CORP_B, agentid: '1000002', secret: WECOM_SECRET_B1 },
];

/** Twenty classic apps, for tests that spread many appids over a cluster's nodes. */
export const FLEET_APPS = Array.from({ length: 20 }, (_, i) => ({
  appid: `wx${(0xf1ee7000 + i).toString(16).padStart(16, '0')}`,
  secret: `test-appsecret-fleet-${String(i).padStart(2, '0')}-9c8d7e`,
}));

/**
 * Three hundred apps for the many-apps tests: every third uses the stable endpoint, every fifth a
 * jsapi ticket. Their AppSecrets are distinct and known to the log check.
 */
export const MANY_APPS = Array.from({ length: 300 }, (_, i) => ({
  appid: `wx${(0x3a900000 + i).toString(16).padStart(16, '0')}`,
  secret: `test-appsecret-many-${String(i).padStart(3, '0')}-7f6e5d`,
  tokenApi: i % 3 === 2 ? ('stable' as const) : ('classic' as const),
  tickets: i % 5 === 4 ? (['jsapi'] as const) : ([] as const),
}));

const SECRETS = [
  TEST_SECRET,
  TEST_SECRET_2,
  TEST_SECRET_STABLE,
  TEST_SECRET_ROTATED,
  CLIENT_KEY,
  CLIENT_KEY_OTHER,
  WECOM_SECRET_A1,
  WECOM_SECRET_A2,
  WECOM_SECRET_B1,
  CLIENT_KEY_WECOM,
  ...FLEET_APPS.map((a) => a.secret),
  ...MANY_APPS.map((a) => a.secret),
];
/**
 * Simulator access tokens (86_C…, 86_S…) and tickets (T…), the WeCom simulator's tokens (WC_…) and
 * tickets (WT_…), matched whole or as a long prefix.
 */
const TOKEN_PATTERN =
  /86_[CS][A-Za-z0-9_-]{40,}|(?<![A-Za-z0-9_-])T[A-Za-z0-9_-]{80,}|W[CT]_[A-Za-z0-9_-]{40,}/;

/** Lines of `text` that contain a secret or a full token. */
export function findLeaks(text: string): string[] {
  const leaks: string[] = [];
  for (const line of text.split('\n')) {
    if (SECRETS.some((s) => line.includes(s)) || TOKEN_PATTERN.test(line)) leaks.push(line.slice(0, 160));
  }
  return leaks;
}
