/**
 * The bench scripts' command lines: `--flag value` options read with node's util.parseArgs, the
 * same errors in every script (an unknown option names itself and the known ones, a missing value
 * names its option), and typed readers whose errors name the option and the bad value.
 */
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { UsageError } from '../cli/errors';

export interface OptionSpec {
  /** 'string' takes a value (`--out DIR` or `--out=DIR`); 'boolean' is a bare switch */
  type: 'string' | 'boolean';
  /** passed only by a script to its own child processes: accepted, left out of the known-options list */
  internal?: boolean;
}

export type OptionSpecs = Record<string, OptionSpec>;

/**
 * Parses `argv` against `specs`; a repeated option keeps its last value (so a wrapper script can
 * pass a default that the user's own flag overrides). Throws UsageError (exit code 2 where the
 * script maps it) with `usage` appended, for an unknown option, a positional argument, a string
 * option without a value and a switch given a value.
 */
export function parseBenchArgs(argv: readonly string[], specs: OptionSpecs, usage?: string): BenchArgs {
  const known = Object.entries(specs)
    .filter(([, s]) => !s.internal)
    .map(([n]) => `--${n}`)
    .join(', ');
  const fail = (message: string): never => {
    throw new UsageError(usage ? `${message}\n${usage}` : message);
  };
  // strict: false so the tokens come back for every argument and the errors can be ours; the
  // checks strict mode would make are made below, naming the option in the script's own terms
  const options = Object.fromEntries(Object.entries(specs).map(([n, s]) => [n, { type: s.type }]));
  const { tokens } = parseArgs({ args: [...argv], options, strict: false, allowPositionals: true, tokens: true });
  const values = new Map<string, string | true>();
  for (const t of tokens) {
    if (t.kind === 'positional') fail(`unexpected argument ${JSON.stringify(t.value)}; options: ${known}`);
    else if (t.kind === 'option-terminator') fail(`unexpected argument "--"; options: ${known}`);
    else {
      const spec = Object.hasOwn(specs, t.name) ? specs[t.name] : undefined;
      // a single dash is a short option to parseArgs; the bench scripts have none
      if (!spec || !t.rawName.startsWith('--')) fail(`unknown option ${JSON.stringify(t.rawName)}; options: ${known}`);
      else if (spec.type === 'boolean') {
        if (t.value !== undefined) fail(`${t.rawName} takes no value, got ${JSON.stringify(t.value)}`);
        values.set(t.name, true);
      } else {
        // without strict, parseArgs takes the next argument as the value even when it is the next
        // option; an empty value ('--out=') is as missing as none
        if (!t.value || (!t.inlineValue && t.value.startsWith('--'))) fail(`${t.rawName} needs a value`);
        values.set(t.name, t.value as string);
      }
    }
  }
  return new BenchArgs(values, fail);
}

/** The parsed options, read one by one with their types; a reader's fallback is returned when the option is absent. */
export class BenchArgs {
  constructor(
    private readonly values: ReadonlyMap<string, string | true>,
    private readonly fail: (message: string) => never,
  ) {}

  has(name: string): boolean {
    return this.values.has(name);
  }

  /** a switch: true when given */
  flag(name: string): boolean {
    return this.values.get(name) === true;
  }

  text(name: string): string | undefined;
  text(name: string, fallback: string): string;
  text(name: string, fallback?: string): string | undefined {
    const v = this.values.get(name);
    return typeof v === 'string' ? v : fallback;
  }

  /** a folder or file, resolved against the working directory */
  path(name: string, fallback: string): string {
    const v = this.text(name);
    return v === undefined ? fallback : path.resolve(v);
  }

  /** a file name without folders (letters, digits, '_', '.', '-'): the base of the files a script writes */
  baseName(name: string, fallback: string): string {
    const v = this.text(name);
    if (v === undefined) return fallback;
    if (!/^[\w.-]+$/.test(v)) this.fail(`--${name} must be a file base name (letters, digits, _ . -), got ${JSON.stringify(v)}`);
    return v;
  }

  /** an integer >= min (1 unless given) */
  integer<F extends number | undefined>(name: string, fallback: F, min = 1): number | F {
    const v = this.text(name);
    return v === undefined ? fallback : this.toInteger(name, v, min);
  }

  /** a number > 0 */
  positiveNumber(name: string, fallback: number): number {
    const v = this.text(name);
    if (v === undefined) return fallback;
    const n = Number(v);
    if (v.trim() === '' || !Number.isFinite(n) || n <= 0) this.fail(`--${name} must be a positive number, got ${JSON.stringify(v)}`);
    return n;
  }

  /** a number in [min, max] */
  numberIn(name: string, fallback: number, min: number, max: number): number {
    const v = this.text(name);
    if (v === undefined) return fallback;
    const n = Number(v);
    if (v.trim() === '' || !(n >= min && n <= max)) this.fail(`--${name} must be a number in [${min}, ${max}], got ${JSON.stringify(v)}`);
    return n;
  }

  /** one of `allowed` */
  choice<T extends string>(name: string, allowed: readonly T[], fallback: T): T {
    const v = this.text(name);
    if (v === undefined) return fallback;
    if (!allowed.includes(v as T)) this.fail(`--${name} must be one of ${allowed.join(', ')}, got ${JSON.stringify(v)}`);
    return v as T;
  }

  /** a comma-separated, non-empty list of names from `allowed` */
  list<T extends string>(name: string, allowed: readonly T[], fallback: readonly T[]): T[] {
    const v = this.text(name);
    if (v === undefined) return [...fallback];
    const items = v.split(',').filter(Boolean);
    const bad = items.filter((x) => !allowed.includes(x as T));
    if (items.length === 0 || bad.length) {
      this.fail(`--${name} must be a comma-separated list of ${allowed.join(', ')}, got ${JSON.stringify(v)}${bad.length ? ` (unknown: ${bad.join(', ')})` : ''}`);
    }
    return items as T[];
  }

  /** a comma-separated, non-empty list of integers >= min (1 unless given) */
  integers(name: string, fallback: readonly number[], min = 1): number[] {
    const v = this.text(name);
    if (v === undefined) return [...fallback];
    return v.split(',').map((item) => this.toInteger(name, item, min));
  }

  private toInteger(name: string, v: string, min: number): number {
    const n = Number(v);
    if (v.trim() === '' || !Number.isInteger(n) || n < min) {
      this.fail(`--${name} must be ${min === 1 ? 'a positive integer' : `an integer >= ${min}`}, got ${JSON.stringify(v)}`);
    }
    return n;
  }
}
