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
  /** by OptionSpec name: the value, or true for a flag given */
  options: Record<string, string | true>;
  positionals: string[];
  /** always false: --help is answered by the parser before a handler runs (kept for handlers that check it) */
  help: boolean;
}

/** Commands that use the local stack take its folder; the program hands it on as NTML_STACK_DIR. */
export const stackDirOption: OptionSpec = {
  name: 'stack-dir',
  value: 'DIR',
  help: 'local stack folder (default: $NTML_STACK_DIR, else .ntml/stack); it may live outside the checkout',
};

const namespaceOption: OptionSpec = { name: 'namespace', value: 'NS', help: 'Temporal namespace (default: $NTML_NAMESPACE or "default")' };

/**
 * The options a command accepts, for the parser and shell completion alike: every command that
 * talks to Temporal takes --address, --namespace and --stack-dir (without --address it finds the
 * server, and the store, of the local stack in that folder).
 */
export function commandOptions(spec: CommandSpec): OptionSpec[] {
  const names = new Set(spec.options.map((o) => o.name));
  if (!names.has('address')) return spec.options;
  return [...spec.options, ...(names.has('namespace') ? [] : [namespaceOption]), ...(names.has('stack-dir') ? [] : [stackDirOption])];
}

/**
 * The usage lines a handler prints under its own usage error (the parser's errors get the same
 * form): the synopsis and where the full help is. `_brief` is accepted for older callers.
 */
export function commandUsage(spec: CommandSpec, _brief = true): string {
  const pos = (spec.positionals ?? []).map((p) => (p.optional ? `[${p.name}]` : p.name)).join(' ');
  const synopsis = spec.synopsis ?? [`ntml ${spec.name}${pos ? ` ${pos}` : ''}${spec.options.length ? ' [options]' : ''}`];
  return [`usage: ${synopsis[0]}`, ...synopsis.slice(1).map((l) => `       ${l}`), `("ntml ${spec.name} --help" explains more)`].join('\n');
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
