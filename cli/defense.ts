/**
 * `ntml defense list`: the defenses a purify config's `defense` (or a sweep's defense axis)
 * can name, with their defaults and default clean budget. Loads TensorFlow (the plugins live
 * in the ML core), nothing else.
 */
import { commandUsage, parseArgs, type CommandSpec } from './args';
import { UsageError } from './errors';
import { defenseConfigSchema, defenseDisplayName, defenseNames } from '../core/defenses/configs';

interface Io {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
}

export const defenseList: CommandSpec = {
  name: 'defense list',
  brief: 'the available defenses: name, defaults, default clean budget',
  summary: 'List NT-ML, the baselines and `none` with the defaults of defenses.md (set any of them beside `name` in `defense:`).',
  options: [],
};

const defenseUsage = () => ['usage: ntml defense list', '', `  list       ${defenseList.brief}`].join('\n');

async function listDefenses(io: Io): Promise<number> {
  const { getDefense } = await import('../core/defenses/registry');
  for (const name of defenseNames) {
    const defaults = defenseConfigSchema.parse({ name });
    const { name: _name, ...settings } = defaults as Record<string, unknown>;
    const plugin = name === 'none' || name === 'ntml' ? undefined : getDefense(name);
    const budget = plugin
      ? typeof plugin.defaultCleanBudget === 'number'
        ? String(plugin.defaultCleanBudget)
        : `${plugin.defaultCleanBudget.fraction * 100}%`
      : name === 'ntml'
        ? '100'
        : '-';
    const what =
      plugin?.description ??
      (name === 'ntml' ? 'NT-ML: standard -> non-target label -> mutual learning (switches in `ntml:`, docs/ntml.md)' : 'no defense: reports the backdoored model');
    io.stdout.write(`${name.padEnd(6)} ${defenseDisplayName(defaults).padEnd(12)} default budget ${budget.padEnd(4)}  ${what}\n`);
    if (Object.keys(settings).length) io.stdout.write(`       defaults: ${JSON.stringify(settings)}\n`);
  }
  return 0;
}

export async function defenseCommand(argv: string[], io: Io = { stdout: process.stdout, stderr: process.stderr }): Promise<number> {
  const [sub, ...rest] = argv;
  try {
    switch (sub) {
      case 'list': {
        const args = parseArgs(rest, defenseList);
        if (args.help) {
          io.stdout.write(`${commandUsage(defenseList)}\n`);
          return 0;
        }
        return await listDefenses(io);
      }
      case '--help':
      case '-h':
      case 'help':
        io.stdout.write(`${defenseUsage()}\n`);
        return 0;
      case undefined:
        throw new UsageError('missing defense subcommand (list)', defenseUsage());
      default:
        throw new UsageError(`unknown defense subcommand "${sub}" (expected list)`, defenseUsage());
    }
  } catch (err) {
    if (err instanceof UsageError) {
      io.stderr.write(`ntml: ${err.message}\n`);
      if (err.usage) io.stderr.write(`\n${err.usage}\n`);
      return 2;
    }
    throw err;
  }
}
