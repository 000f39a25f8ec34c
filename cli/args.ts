/**
 * How a command declares its options and positionals (CommandSpec), and what its handler
 * receives (ParsedArgs). cli/program.ts turns the specs into the commander parser and help.
 */
import { UsageError } from './errors';

export interface OptionSpec {
  /** long name without dashes, e.g. "config" */
  name: string;
  /** metavariable when the option takes a value, e.g. "FILE" */
  value?: string;
  help: string;
}

export interface PositionalSpec {
  name: string;
  help: string;
  optional?: boolean;
}

export interface CommandSpec {
  /** e.g. "purify status" */
  name: string;
  /** one line for the command list of `ntml --help` */
  brief: string;
  summary: string;
  /** usage line(s) after "usage: ", when the generated one is not enough */
  synopsis?: string[];
  /** extra paragraphs printed after the options */
  details?: string;
  positionals?: PositionalSpec[];
  options: OptionSpec[];
}

export interface ParsedArgs {
  options: Record<string, string | true>;
  positionals: string[];
  help: boolean;
}

export const helpOption: OptionSpec = { name: 'help', help: 'show this help' };

/** The help text of a command; `brief` leaves out the details paragraphs (for usage errors). */
export function commandUsage(spec: CommandSpec, brief = false): string {
  const pos = (spec.positionals ?? []).map((p) => (p.optional ? `[${p.name}]` : p.name)).join(' ');
  const synopsis = spec.synopsis ?? [`ntml ${spec.name}${pos ? ` ${pos}` : ''}${spec.options.length ? ' [options]' : ''}`];
  const lines = [`usage: ${synopsis[0]}`, ...synopsis.slice(1).map((l) => `       ${l}`), '', spec.summary];
  if (spec.positionals?.length) {
    lines.push('', 'arguments:');
    for (const p of spec.positionals) lines.push(`  ${p.name.padEnd(24)}${p.help}`);
  }
  const options = [...spec.options, helpOption];
  lines.push('', 'options:');
  for (const o of options) {
    const flag = `--${o.name}${o.value ? ` ${o.value}` : ''}`;
    const help = o.help.split('\n');
    lines.push(flag.length >= 24 ? `  ${flag}\n${' '.repeat(26)}${help[0]}` : `  ${flag.padEnd(24)}${help[0]}`);
    for (const more of help.slice(1)) lines.push(`${' '.repeat(26)}${more}`);
  }
  if (spec.details && !brief) lines.push('', spec.details);
  if (brief) lines.push('', `("ntml ${spec.name} --help" explains more)`);
  return lines.join('\n');
}

/** Parses `--name value`, `--name=value`, boolean `--name`, `-h`, and `--` (the rest are positionals). */
export function stringOption(args: ParsedArgs, name: string): string | undefined {
  const v = args.options[name];
  return typeof v === 'string' ? v : undefined;
}

/** An integer option in [min, max]; `fallback` when absent; a usage error naming the option otherwise. */
export function intOption(args: ParsedArgs, name: string, fallback: number, min: number, max: number): number {
  const value = stringOption(args, name);
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max) throw new UsageError(`--${name} must be an integer in [${min}, ${max}], got "${value}"`);
  return n;
}

export function flag(args: ParsedArgs, name: string): boolean {
  return args.options[name] === true;
}
