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
  ...FLEET_APPS.map((a) => a.secret),
  ...MANY_APPS.map((a) => a.secret),
];
/** Simulator access tokens (86_C…, 86_S…) and tickets (T…), matched whole or as a long prefix. */
const TOKEN_PATTERN = /86_[CS][A-Za-z0-9_-]{40,}|(?<![A-Za-z0-9_-])T[A-Za-z0-9_-]{80,}/;

/** Lines of `text` that contain a secret or a full token. */
export function findLeaks(text: string): string[] {
  const leaks: string[] = [];
  for (const line of text.split('\n')) {
    if (SECRETS.some((s) => line.includes(s)) || TOKEN_PATTERN.test(line)) leaks.push(line.slice(0, 160));
  }
  return leaks;
}
