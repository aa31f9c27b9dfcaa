import { describe, expect, it } from 'vitest';
import { type TokenKind, type TokenRecord, ticketKind } from '../../../lib/domain.ts';
import { MemoryStore } from '../../../lib/store/memory.ts';
import { assertValidKey } from '../../../lib/store/validate.ts';
import type { CoreEvent } from '../../../lib/telemetry/events.ts';
import {
  decodeRecord,
  encodeRecord,
  passiveKeys,
  RECORD_FORMAT,
  readRecord,
  recordKeys,
  upstreamKeys,
} from '../../../lib/token/record.ts';
import { TEST_APPID, TEST_APPID_2, TEST_SECRET } from '../../support/secrets.ts';

const FETCHED_AT = Date.UTC(2025, 0, 15, 4, 0, 0);

function record(overrides: Partial<TokenRecord> = {}): TokenRecord {
  return {
    kind: 'access_token',
    appid: TEST_APPID,
    value: 'ACCESS_TOKEN_VALUE_0123456789',
    origin: 'classic',
    fetchedAtMs: FETCHED_AT,
    expiresAtMs: FETCHED_AT + 7_190_000,
    refreshAtMs: FETCHED_AT + 6_300_000,
    generation: 7,
    writer: 'instance-1f2e',
    ...overrides,
  };
}

/** The record as JSON with some fields replaced or removed. */
function encodedWith(changes: Record<string, unknown>, remove: string[] = []): string {
  const raw: Record<string, unknown> = { ...record(), ...changes };
  for (const field of remove) delete raw[field];
  return JSON.stringify(raw);
}

describe('encodeRecord / decodeRecord', () => {
  it.each([
    ['a classic access token', record()],
    ['a stable access token', record({ origin: 'stable' })],
    ['a jsapi ticket', record({ kind: 'jsapi_ticket', origin: 'ticket' })],
    ['a wx_card ticket', record({ kind: 'wx_card_ticket', origin: 'ticket', generation: 1 })],
    ['a 2048-character value', record({ value: 'A'.repeat(2048) })],
  ])('round-trips %s', (_what, original) => {
    expect(decodeRecord(encodeRecord(original), original.kind, original.appid)).toEqual(original);
  });

  it('ignores fields it does not know', () => {
    expect(decodeRecord(encodedWith({ note: 'from a newer writer' }), 'access_token', TEST_APPID)).toEqual(
      record(),
    );
  });
});

describe('readRecord', () => {
  const target = {
    kind: 'access_token' as const,
    appid: TEST_APPID,
    keys: recordKeys('readrecord', 'access_token', TEST_APPID),
  };

  it('decodes the text once while it stays the same, and again when it changes', async () => {
    const store = new MemoryStore({ now: () => FETCHED_AT });
    const events: CoreEvent[] = [];
    const telemetry = { emit: (e: CoreEvent) => events.push(e) };
    await store.set(target.keys.record, encodeRecord(record()), 3600);
    const first = await readRecord(store, telemetry, target);
    const again = await readRecord(store, telemetry, target);
    expect(again).toBe(first);
    expect(first).toEqual(record());
    expect(Object.isFrozen(first)).toBe(true);

    await store.set(
      target.keys.record,
      encodeRecord(record({ generation: 8, value: 'NEXT_TOKEN_0123' })),
      3600,
    );
    const next = await readRecord(store, telemetry, target);
    expect(next).toEqual(record({ generation: 8, value: 'NEXT_TOKEN_0123' }));

    await store.set(target.keys.record, '{"kind":"access_token"', 3600);
    expect(await readRecord(store, telemetry, target)).toBeNull();
    expect(events.map((e) => e.event)).toEqual(['record.invalid']);

    await store.delete(target.keys.record);
    expect(await readRecord(store, telemetry, target)).toBeNull();
  });
});

describe('decodeRecord answers null, never throwing, for', () => {
  it.each([
    ['an absent value', null],
    ['the empty string', ''],
    ['corrupt JSON', '{"kind":"access_token",'],
    ['a truncated record', encodeRecord(record()).slice(0, -10)],
    ['a plain token string', 'ACCESS_TOKEN_VALUE_0123456789'],
    ['a JSON string', JSON.stringify('ACCESS_TOKEN_VALUE_0123456789')],
    ['a JSON number (a counter)', '42'],
    ['JSON null', 'null'],
    ['a JSON array', JSON.stringify([record()])],
    ['another kind', encodedWith({ kind: 'jsapi_ticket' })],
    ['an unknown kind', encodedWith({ kind: 'refresh_token' })],
    ['another appid', encodedWith({ appid: TEST_APPID_2 })],
    ['an empty value', encodedWith({ value: '' })],
    ['a numeric value', encodedWith({ value: 12345 })],
    ['a value over 2048 characters', encodedWith({ value: 'A'.repeat(2049) })],
    ['an unknown origin', encodedWith({ origin: 'component' })],
    ['a negative fetch time', encodedWith({ fetchedAtMs: -1 })],
    ['a zero fetch time', encodedWith({ fetchedAtMs: 0 })],
    ['a fractional expiry', encodedWith({ expiresAtMs: FETCHED_AT + 0.5 })],
    ['an expiry as a string', encodedWith({ expiresAtMs: String(FETCHED_AT + 7_190_000) })],
    ['a NaN expiry (as JSON writes it: null)', encodedWith({ expiresAtMs: Number.NaN })],
    ['an infinite refresh time (1e400)', encodedWith({}).replace(/"refreshAtMs":\d+/, '"refreshAtMs":1e400')],
    ['an expiry before the fetch', encodedWith({ expiresAtMs: FETCHED_AT - 1 })],
    ['an expiry equal to the fetch', encodedWith({ expiresAtMs: FETCHED_AT })],
    ['generation 0', encodedWith({ generation: 0 })],
    ['a fractional generation', encodedWith({ generation: 1.5 })],
    ['a writer over 64 characters', encodedWith({ writer: 'w'.repeat(65) })],
    ['a numeric writer', encodedWith({ writer: 1 })],
    ['a value over 8 KB in all', encodedWith({ padding: 'p'.repeat(8192) })],
  ])('%s', (_what, text) => {
    expect(decodeRecord(text, 'access_token', TEST_APPID)).toBeNull();
  });

  it.each(Object.keys(record()))('a record without %s', (field) => {
    expect(decodeRecord(encodedWith({}, [field]), 'access_token', TEST_APPID)).toBeNull();
  });

  it('an appid that is not a WeChat appid, even when the record names it', () => {
    const appid = 'not-an-appid';
    expect(decodeRecord(encodedWith({ appid }), 'access_token', appid)).toBeNull();
  });

  it('a kind that is not a credential kind, even when the record names it', () => {
    const kind = 'refresh_token' as TokenKind;
    expect(decodeRecord(encodedWith({ kind }), kind, TEST_APPID)).toBeNull();
  });
});

describe('cache keys', () => {
  const kinds: TokenKind[] = ['access_token', 'jsapi_ticket', 'wx_card_ticket'];

  it('are valid Memcached keys, namespaced by prefix and record format', () => {
    const keys = [
      ...kinds.flatMap((kind) => Object.values(recordKeys('wts', kind, TEST_APPID))),
      upstreamKeys('wts', 'token', TEST_APPID).failure,
      upstreamKeys('wts', 'ticket_wx_card', TEST_APPID).dailyCalls('20250115'),
      passiveKeys('wts', TEST_APPID).accepted('20250115'),
      passiveKeys('wts', TEST_APPID).forceCount('20250115'),
      passiveKeys('wts', TEST_APPID).forceSpacing,
    ];
    for (const key of keys) {
      expect(() => assertValidKey(key)).not.toThrow();
      expect(key.startsWith(`wts:${RECORD_FORMAT}:`)).toBe(true);
      expect(key).toContain(TEST_APPID);
      expect(key.includes(TEST_SECRET)).toBe(false);
    }
    expect(new Set(keys).size).toBe(keys.length);
  });

  it('differ by kind, appid and prefix', () => {
    const all = [
      ...kinds.map((kind) => recordKeys('wts', kind, TEST_APPID).record),
      recordKeys('wts', 'access_token', TEST_APPID_2).record,
      recordKeys('wts-staging', 'access_token', TEST_APPID).record,
    ];
    expect(new Set(all).size).toBe(all.length);
  });

  it('keep the record and its lock apart', () => {
    const { record: recordKey, lock } = recordKeys('wts', 'access_token', TEST_APPID);
    expect(lock).not.toBe(recordKey);
  });

  it('separate daily counters by day', () => {
    const { dailyCalls } = upstreamKeys('wts', 'token', TEST_APPID);
    expect(dailyCalls('20250115')).not.toBe(dailyCalls('20250116'));
  });
});

describe('ticketKind', () => {
  it.each([
    ['jsapi', 'jsapi_ticket'],
    ['wx_card', 'wx_card_ticket'],
  ] as const)('stores %s tickets as %s records', (type, kind) => {
    expect(ticketKind(type)).toBe(kind);
  });
});
