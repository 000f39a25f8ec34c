/**
 * `ntml defense list`: the defenses a purify config's `defense` (or a sweep's defense axis)
 * can name, with their defaults and default clean budget. Loads TensorFlow (the plugins live
 * in the ML core), nothing else.
 */
import type { CommandSpec } from './args';
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

/** `ntml defense list`. */
export async function defenseListCmd(_args: unknown, io: Io): Promise<number> {
  return listDefenses(io);
}
