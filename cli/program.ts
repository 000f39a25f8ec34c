/**
 * The `ntml` parser, built with commander from the command tree (cli/tree.ts): generated help,
 * --version, `ntml help TOPIC`, did-you-mean for commands and options. Handlers receive the
 * ParsedArgs their CommandSpec declares; commander's errors become UsageErrors (exit code 2)
 * worded as before, and every error is reported here in one line (or a few).
 */
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { Command, CommanderError, Help, Option } from 'commander';
import { commandOptions, type CommandSpec, type ParsedArgs } from './args';
import { UsageError, UserError } from './errors';
import { GROUPS, LEAVES, type CliIo, type Leaf } from './tree';

type Out = { stdout: NodeJS.WritableStream; stderr: NodeJS.WritableStream };

/** How a help/version request ends the parse: not an error, exit 0. */
class Done extends Error {}

export function version(): string {
  // dist/cli/program.js -> the package root
  const pkg = JSON.parse(readFileSync(path.join(__dirname, '..', '..', 'package.json'), 'utf8')) as { version: string };
  return pkg.version;
}

interface Node {
  leaf?: Leaf;
  group?: (typeof GROUPS)[number];
  /** words after ntml */
  path: string;
}

const nodes = new WeakMap<Command, Node>();

function fullPath(cmd: Command): string {
  const names: string[] = [];
  for (let c: Command | null = cmd; c?.parent; c = c.parent) names.unshift(c.name());
  return names.join(' ');
}

/** The lines of a group's help: its leaves at every depth, so `ntml audit --help` shows `audit schedule create`. */
function descendants(cmd: Command, root: boolean): Command[] {
  const out: Command[] = [];
  for (const sub of cmd.commands) {
    const node = nodes.get(sub);
    if (!node || (node.leaf?.hidden ?? false)) continue;
    if (root && node.group?.folded) out.push(sub);
    else {
      if (node.leaf || sub.commands.length === 0) out.push(sub);
      out.push(...descendants(sub, false));
    }
  }
  return out;
}

function termOf(cmd: Command): string {
  const node = nodes.get(cmd);
  if (node?.group?.folded && !cmd.parent?.parent) return `ntml ${node.group.folded}`;
  const synopsis = node?.leaf?.spec.synopsis?.[0];
  if (synopsis) return synopsis;
  const args = cmd.registeredArguments.map((a) => (a.required ? a.name() : `[${a.name()}]`)).join(' ');
  return `ntml ${fullPath(cmd)}${args ? ` ${args}` : ''}${cmd.options.length ? ' [options]' : ''}`;
}

const helpConfig: Partial<Help> = {
  styleTitle: (s: string) => s.toLowerCase(),
  sortSubcommands: false,
  visibleCommands(this: Help, cmd: Command) {
    if (cmd.commands.length === 0) return [];
    const own = Help.prototype.visibleCommands.call(this, cmd).filter((c) => !nodes.has(c)); // the implicit `help` command
    return [...descendants(cmd, !cmd.parent), ...own];
  },
  subcommandTerm: (cmd: Command) => (nodes.has(cmd) ? termOf(cmd) : `ntml ${cmd.name()} [command]`),
};

/** Edit distance with transpositions (optimal string alignment), for did-you-mean. */
function distance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...new Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.length][b.length];
}

/** The closest candidates within a few edits (as commander does for options), or none. */
function nearest(word: string, candidates: string[]): string[] {
  let best = Infinity;
  let out: string[] = [];
  for (const c of candidates) {
    const dist = distance(word, c);
    if (dist > Math.max(1, Math.floor(c.length * 0.4))) continue;
    if (dist < best) [best, out] = [dist, [c]];
    else if (dist === best) out.push(c);
  }
  return out;
}

function subcommandNames(cmd: Command): string[] {
  return cmd.commands.filter((c) => nodes.has(c) && !nodes.get(c)!.leaf?.hidden).map((c) => c.name());
}

function shortUsage(cmd: Command): string {
  const where = fullPath(cmd);
  return `usage: ntml${where ? ` ${where}` : ''} ${cmd.usage()}\n("ntml ${where ? `${where} ` : ''}--help" explains more)`;
}

/** `word` is no subcommand of `cmd`: the expected ones and the nearest (commander's own suggestion would look at the flattened help list). */
function unknownSubcommand(cmd: Command, word: string): UsageError {
  const where = fullPath(cmd);
  const subs = subcommandNames(cmd);
  const list = `${subs.slice(0, -1).join(', ')}${subs.length > 1 ? ' or ' : ''}${subs[subs.length - 1]}`;
  const orOptions = nodes.get(cmd)?.leaf ? ', or options such as --config' : '';
  const close = nearest(word, subs);
  const hint = close.length ? `\n(did you mean ${close.join(' or ')}?)` : '';
  return new UsageError(`unknown ${where ? `${where} sub` : ''}command "${word}" (expected ${list}${orOptions})${hint}`, shortUsage(cmd));
}

/** Commander's error for a command, worded like the rest of ntml, with a short usage. */
function usageError(cmd: Command, err: CommanderError): Error {
  const where = fullPath(cmd);
  const command = `ntml${where ? ` ${where}` : ''}`;
  const usage = shortUsage(cmd);
  const quoted = /'([^']+)'/.exec(err.message)?.[1] ?? '';
  const suggestion = /\(Did you mean (.+)\?\)/.exec(err.message)?.[1];
  const hint = suggestion ? `\n(did you mean ${suggestion}?)` : '';
  const subs = subcommandNames(cmd);
  const list = `${subs.slice(0, -1).join(', ')}${subs.length > 1 ? ' or ' : ''}${subs[subs.length - 1]}`;
  switch (err.code) {
    case 'commander.helpDisplayed':
    case 'commander.version':
      return new Done();
    case 'commander.help':
      return err.exitCode === 0 ? new Done() : new UsageError(`missing ${where} subcommand (${list})`, usage);
    case 'commander.unknownCommand':
      return unknownSubcommand(cmd, quoted);
    case 'commander.excessArguments': {
      const declared = cmd.registeredArguments.length;
      const extra = cmd.args[declared];
      if (subs.length && declared === 0) return unknownSubcommand(cmd, extra);
      return new UsageError(`unexpected argument "${extra}" for "${command}"`, usage);
    }
    case 'commander.unknownOption':
      return new UsageError(`unknown option ${quoted} for "${command}"${hint}`, usage);
    case 'commander.missingArgument':
      return new UsageError(`missing ${quoted} for "${command}"`, usage);
    case 'commander.optionMissingArgument': {
      const [flag, value] = quoted.split(' ');
      return new UsageError(`${flag} needs a value (${value?.replace(/[<>]/g, '')})`, usage);
    }
    default:
      return new UsageError(err.message.replace(/^error: /, ''), usage);
  }
}

/** A value option: refuses a second occurrence, an empty value, and another option taken for the value. */
function valueParser(name: string, metavar: string, cmd: () => Command) {
  return (value: string, previous: unknown) => {
    const usage = `usage: ntml ${fullPath(cmd())} ${cmd().usage()}`;
    if (previous !== undefined) throw new UsageError(`--${name} given more than once`, usage);
    if (value === '' || value.startsWith('--')) throw new UsageError(`--${name} needs a value (${metavar})`, usage);
    return value;
  };
}

function toParsed(cmd: Command, spec: CommandSpec): ParsedArgs {
  const options: ParsedArgs['options'] = {};
  for (const o of cmd.options) {
    const name = o.long?.replace(/^--/, '');
    if (!name || name === 'help') continue;
    const v = cmd.getOptionValue(o.attributeName()) as string | boolean | undefined;
    if (v === true || typeof v === 'string') options[name] = v;
  }
  const declared = spec.positionals?.length ?? 0;
  return { options, positionals: cmd.args.slice(0, declared), help: false };
}

export interface RunHooks {
  /** before a handler runs (not for help or usage errors): quiet the libraries, start telemetry */
  beforeHandler?: (leaf: Leaf) => Promise<void>;
}

export function buildProgram(io: Out, run: (leaf: Leaf, args: ParsedArgs) => Promise<void>): Command {
  const program = new Command('ntml');
  program
    .description('NT-ML backdoor purification for image classifiers, run as durable Temporal workflows.')
    .usage('<command> [options]')
    .version(version(), '-V, --version', 'print the ntml version')
    .helpOption('-h, --help', 'show this help')
    .helpCommand('help [command...]', 'help on a command, e.g. "ntml help purify status"')
    .configureHelp(helpConfig)
    .configureOutput({ writeOut: (s) => io.stdout.write(s), writeErr: () => undefined, outputError: () => undefined })
    .showSuggestionAfterError(true)
    // a command's options belong to it only before its subcommand: "purify" and "purify attach"
    // both take --address and --out, and without this "purify attach ID --address X" gave them to
    // "purify" (attach and status then ignored them); subcommands inherit the setting
    .enablePositionalOptions()
    .addHelpText(
      'after',
      `
Run "ntml <command> --help" (or "ntml help <command>") for the options of a command.

examples:
  ntml purify --config examples/demo.yaml          embedded stack, live progress, report in runs/
  eval "$(ntml stack start)"                       shared local stack (commands start their workers on it)
  ntml purify --config my.yaml --detach            start on $NTML_TEMPORAL_ADDRESS and return
  ntml purify attach purify-demo-20250101-120000   follow it and fetch the report
  source <(ntml completion bash)                   tab completion`,
    );
  program.exitOverride((err) => {
    throw usageError(program, err);
  });
  nodes.set(program, { path: '' });

  const byPath = new Map<string, Command>([['', program]]);
  const commandAt = (words: string): Command => {
    const existing = byPath.get(words);
    if (existing) return existing;
    const cut = words.lastIndexOf(' ');
    const parent = commandAt(cut < 0 ? '' : words.slice(0, cut));
    const leaf = LEAVES.find((l) => l.spec.name === words);
    const cmd = parent.command(words.slice(cut + 1), { hidden: leaf?.hidden ?? false });
    cmd.helpOption('-h, --help', 'show this help').helpCommand(false).configureHelp(helpConfig).showSuggestionAfterError(true);
    cmd.exitOverride((err) => {
      throw usageError(cmd, err);
    });
    const group = GROUPS.find((g) => g.name === words);
    nodes.set(cmd, { path: words, group, leaf });
    if (group) cmd.summary(group.brief).description(group.brief);
    byPath.set(words, cmd);
    return cmd;
  };

  // groups come into being with their first leaf, so subcommands list in LEAVES order
  for (const leaf of LEAVES) {
    const { spec } = leaf;
    const cmd = commandAt(spec.name);
    cmd.summary(spec.brief).description(spec.summary);
    // the specs' line breaks were laid out for the old fixed-width help; commander wraps to the terminal
    const flow = (text: string) => text.replace(/\s*\n\s*/g, ' ');
    for (const p of spec.positionals ?? []) cmd.argument(p.optional ? `[${p.name}]` : `<${p.name}>`, flow(p.help));
    for (const o of commandOptions(spec)) {
      const option = new Option(o.value ? `--${o.name} <${o.value}>` : `--${o.name}`, flow(o.help));
      if (o.value) option.argParser(valueParser(o.name, o.value, () => cmd));
      cmd.addOption(option);
    }
    if (spec.synopsis) cmd.usage(spec.synopsis[0].replace(`ntml ${spec.name} `, ''));
    if (spec.details) cmd.addHelpText('after', `\n${spec.details}`);
    cmd.action(async () => run(leaf, toParsed(cmd, spec)));
  }
  // groups without an action of their own: their usage line lists the subcommands
  for (const [words, cmd] of byPath) {
    if (!words || nodes.get(cmd)?.leaf) continue;
    const subs = cmd.commands.filter((c) => !nodes.get(c)?.leaf?.hidden).map((c) => c.name());
    cmd.usage(`${subs.join('|')} [options]`);
  }
  return program;
}

/**
 * Parses argv and runs the command; returns the exit code. Errors are reported on io.stderr:
 * usage and config errors exit 2, a UserError its own code, anything else 1 (one line; the
 * stack with NTML_DEBUG=1).
 */
export async function runCli(argv: string[], io: CliIo | Out, hooks: RunHooks = {}): Promise<number> {
  // in-process callers (tests) pass plain streams and no signal
  const full = ('signal' in io ? io : { ...io, signal: new AbortController().signal }) as CliIo;
  let code = 0;
  const program = buildProgram(full, async (leaf, args) => {
    await hooks.beforeHandler?.(leaf);
    // --namespace reaches every Temporal command the same way ($NTML_NAMESPACE is what they read)
    if (typeof args.options.namespace === 'string') process.env.NTML_NAMESPACE = args.options.namespace;
    // --stack-dir likewise: infra/stack/dir.ts reads $NTML_STACK_DIR in one place
    if (typeof args.options['stack-dir'] === 'string') process.env.NTML_STACK_DIR = args.options['stack-dir'];
    // a bad NTML_STORE / NTML_S3_ENDPOINT is a usage error before any work (completion runs in shell start-up: left alone)
    if (leaf.spec.name !== 'completion') await (await import('./storeSettings')).checkStoreSettings();
    code = await (await leaf.handler())(args, full);
  });
  // `ntml help sweep start` is `ntml sweep start --help`, at any depth (commander's help command takes one word)
  if (argv[0] === 'help') {
    let cmd = program;
    for (const word of argv.slice(1)) {
      const sub = cmd.commands.find((c) => c.name() === word && nodes.has(c));
      if (!sub) return report(unknownSubcommand(cmd, word), full.stderr);
      cmd = sub;
    }
    argv = argv.length === 1 ? [] : [...argv.slice(1), '--help'];
  }
  if (argv.length === 0) {
    full.stdout.write(program.helpInformation());
    return 0;
  }
  try {
    await program.parseAsync(argv, { from: 'user' });
    return code;
  } catch (err) {
    if (err instanceof Done) return 0;
    return report(err, full.stderr);
  }
}

export function report(err: unknown, stderr: NodeJS.WritableStream): number {
  const debug = Boolean(process.env.NTML_DEBUG);
  if (err instanceof UsageError) {
    if (err.message) stderr.write(`ntml: ${err.message}\n`);
    if (err.usage) stderr.write(`${err.message ? '\n' : ''}${err.usage}\n`);
    return 2;
  }
  const e = err as Error;
  if (e?.name === 'ConfigError') {
    stderr.write(`ntml: ${e.message}\n`);
    return 2;
  }
  if (err instanceof UserError) {
    stderr.write(`ntml: ${err.message}\n`);
    if (debug && err.stack) stderr.write(`${err.stack}\n`);
    return err.exitCode;
  }
  if (err instanceof CommanderError) {
    stderr.write(`ntml: ${err.message.replace(/^error: /, '')}\n`);
    return 2;
  }
  // unexpected: one line, the stack only on request
  stderr.write(`ntml: ${e?.message ?? String(err)}\n`);
  if (debug && e?.stack) stderr.write(`${e.stack}\n`);
  else stderr.write('(set NTML_DEBUG=1 for the stack trace)\n');
  return 1;
}
