/**
 * A small argv parser: every command declares its options and positionals, which gives
 * both the parsing (unknown options are errors) and the --help text from one place.
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

/** Commands that use the local stack take its folder; main.ts hands it on as NTML_STACK_DIR. */
export const stackDirOption: OptionSpec = {
  name: 'stack-dir',
  value: 'DIR',
  help: 'local stack folder (default: $NTML_STACK_DIR, else .ntml/stack);\nit may live outside the checkout',
};

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
export function parseArgs(argv: string[], spec: CommandSpec): ParsedArgs {
  const byName = new Map(spec.options.map((o) => [o.name, o]));
  const out: ParsedArgs = { options: {}, positionals: [], help: false };
  const usage = commandUsage(spec, true);
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--') {
      out.positionals.push(...argv.slice(i + 1));
      break;
    }
    if (arg === '-h' || arg === '--help') {
      out.help = true;
      continue;
    }
    if (arg.startsWith('--')) {
      const eq = arg.indexOf('=');
      const name = arg.slice(2, eq < 0 ? undefined : eq);
      const opt = byName.get(name);
      if (!opt) throw new UsageError(`unknown option --${name} for "ntml ${spec.name}"`, usage);
      if (opt.value) {
        let value: string | undefined;
        if (eq >= 0) value = arg.slice(eq + 1);
        else if (i + 1 < argv.length && !argv[i + 1].startsWith('--')) value = argv[++i];
        if (value === undefined || value === '') throw new UsageError(`--${name} needs a value (${opt.value})`, usage);
        if (name in out.options) throw new UsageError(`--${name} given more than once`, usage);
        out.options[name] = value;
      } else {
        if (eq >= 0) throw new UsageError(`--${name} takes no value`, usage);
        out.options[name] = true;
      }
      continue;
    }
    if (arg.startsWith('-') && arg.length > 1) throw new UsageError(`unknown option ${arg} for "ntml ${spec.name}"`, usage);
    out.positionals.push(arg);
  }
  if (out.help) return out;
  const declared = spec.positionals ?? [];
  const required = declared.filter((p) => !p.optional).length;
  if (out.positionals.length < required) {
    throw new UsageError(`missing ${declared[out.positionals.length].name} for "ntml ${spec.name}"`, usage);
  }
  if (out.positionals.length > declared.length) {
    throw new UsageError(`unexpected argument "${out.positionals[declared.length]}" for "ntml ${spec.name}"`, usage);
  }
  return out;
}

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
