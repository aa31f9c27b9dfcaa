/**
 * Reading one configuration value from an environment map (lib/config.ts passes process.env): each
 * reader names the variable and what a valid value looks like when it fails (`config_invalid`).
 */
import { ServiceError } from './errors.ts';

export type Env = Record<string, string | undefined>;

export function readBoolean(env: Env, name: string, fallback: boolean): boolean {
  return (
    readEnum(env, name, ['true', 'false'], fallback ? 'true' : 'false', (v) => v.toLowerCase()) === 'true'
  );
}

export function nonEmpty(env: Env, name: string): string | undefined {
  const value = env[name]?.trim();
  return value === undefined || value === '' ? undefined : value;
}

export function readInt(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = nonEmpty(env, name);
  if (raw === undefined) return fallback;
  if (!/^\d+$/.test(raw) || Number(raw) < min || Number(raw) > max) {
    throw invalid(name, `must be a whole number from ${min} to ${max}; got "${raw.slice(0, 40)}"`);
  }
  return Number(raw);
}

export function readOptionalInt(env: Env, name: string, min: number, max: number): number | undefined {
  return nonEmpty(env, name) === undefined ? undefined : readInt(env, name, min, min, max);
}

export function readEnum<T extends string>(
  env: Env,
  name: string,
  allowed: readonly T[],
  fallback: T,
  normalise: (v: string) => string = (v) => v,
): T {
  const raw = nonEmpty(env, name);
  if (raw === undefined) return fallback;
  const value = normalise(raw);
  if (!(allowed as readonly string[]).includes(value)) {
    throw invalid(name, `must be one of ${allowed.join(', ')}; got "${raw.slice(0, 40)}"`);
  }
  return value as T;
}

export function readMatch<F extends string | undefined>(
  env: Env,
  name: string,
  fallback: F,
  pattern: RegExp,
  expected: string,
): string | F {
  const raw = nonEmpty(env, name);
  if (raw === undefined) return fallback;
  if (!pattern.test(raw)) throw invalid(name, `must be ${expected}; got "${raw.slice(0, 40)}"`);
  return raw;
}

export function readUrl(env: Env, name: string, fallback: string): string {
  const raw = nonEmpty(env, name) ?? fallback;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw invalid(name, `must be an absolute http(s) URL; got "${raw.slice(0, 80)}"`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw invalid(name, `must be an http(s) URL; got "${raw.slice(0, 80)}"`);
  }
  return raw.replace(/\/+$/, '');
}

export function invalid(name: string, what: string): ServiceError {
  return new ServiceError('config_invalid', `${name} ${what}`);
}
