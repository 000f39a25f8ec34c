/**
 * `ntml attack list` and `ntml attack preview`: what the attacks are and what their triggers
 * look like, without training anything.
 *   ntml attack list
 *   ntml attack preview --attack NAME [--config FILE.yaml] [--data synthetic|cifar10:PATH]
 *                       [--seed N] [--count N] [--scale N] --out FILE.png
 *   ntml attack preview --run ID [--address HOST:PORT] [--namespace NS] [--count N] [--scale N] --out FILE.png
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { commandUsage, intOption, stringOption, type ParsedArgs } from './args';
import { UsageError, UserError } from './errors';
import { deriveSeed } from '../core/rng';
import type { ImageDataset } from '../core/data/dataset';
import { DatasetError } from '../core/data/dataset';
import { generateSyntheticSplits } from '../core/data/synthetic';
import { loadCifar10 } from '../core/data/cifar10';
import { AttackConfigError, attackRegistry, getAttack, knownAttacks, parseAttackConfig } from '../core/attacks/registry';
import { attackPreviewPng, previewIndices } from '../core/attacks/preview';

interface Io {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
}

export { attackList, attackPreview } from './commands';
import { attackPreview } from './commands';

async function readAttackConfig(file: string | undefined, name: string | undefined): Promise<ReturnType<typeof parseAttackConfig>> {
  let raw: Record<string, unknown> = {};
  if (file) {
    let text: string;
    try {
      text = await fs.readFile(file, 'utf8');
    } catch (err) {
      throw new UsageError(`--config: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
    }
    let doc: unknown;
    try {
      doc = parseYaml(text);
    } catch (err) {
      throw new UsageError(`--config: ${file} is not valid YAML/JSON (${(err as Error).message.split('\n')[0]})`);
    }
    if (doc && typeof doc === 'object' && !Array.isArray(doc) && !('name' in doc) && 'attack' in doc) doc = (doc as { attack: unknown }).attack;
    if (doc === null || doc === undefined) doc = {};
    if (typeof doc !== 'object' || Array.isArray(doc)) throw new UsageError(`--config: ${file} must hold an attack config (a mapping with a "name" field)`);
    raw = { ...(doc as Record<string, unknown>) };
  }
  if (name !== undefined) {
    if (raw.name !== undefined && raw.name !== name) {
      throw new UsageError(`--attack ${name} disagrees with the config's name "${String(raw.name)}"`);
    }
    raw.name = name;
  }
  if (raw.name === undefined) throw new UsageError(`--attack NAME is required (one of ${knownAttacks().join(', ')}), or a --config with a name`);
  return parseAttackConfig(raw);
}

async function loadPreviewData(source: string, seed: number): Promise<ImageDataset> {
  if (source === 'synthetic') {
    // the same test split `data: {format: synthetic}` (defaults) generates for a purify run with this seed
    return generateSyntheticSplits({ trainSize: 1, testSize: 1000, seed: deriveSeed(seed, 'synthetic') }).test;
  }
  if (source.startsWith('cifar10:') && source.length > 'cifar10:'.length) return loadCifar10(source.slice('cifar10:'.length), 'test');
  throw new UsageError(`--data must be "synthetic" or "cifar10:PATH", got "${source}"`);
}

function listAttacks(io: Io): number {
  for (const name of knownAttacks()) {
    const plugin = attackRegistry.get(name)!;
    const { name: _name, ...defaults } = parseAttackConfig({ name }) as unknown as Record<string, unknown>;
    io.stdout.write(`${name.padEnd(12)} ${plugin.kind}\n`);
    io.stdout.write(`  ${plugin.description}\n`);
    io.stdout.write(`  defaults: ${Object.entries(defaults).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(' ')}\n`);
  }
  return 0;
}

async function preview(args: ParsedArgs, io: Io): Promise<number> {
  const out = stringOption(args, 'out');
  if (!out) throw new UsageError('--out FILE.png is required', commandUsage(attackPreview, true));
  const seed = intOption(args, 'seed', 0, 0, 2 ** 31 - 1);
  const count = intOption(args, 'count', 8, 1, 64);
  const scale = intOption(args, 'scale', 4, 1, 32);
  const runId = stringOption(args, 'run');
  if (runId !== undefined) {
    for (const other of ['attack', 'config', 'data', 'seed']) {
      if (stringOption(args, other) !== undefined) throw new UsageError(`--${other} cannot be combined with --run: the run's own ${other === 'data' ? 'test set' : other} is used`);
    }
    return previewRun(runId, args, out, count, scale, io);
  }
  if (stringOption(args, 'address') !== undefined || stringOption(args, 'namespace') !== undefined) {
    throw new UsageError('--address and --namespace go with --run ID');
  }
  const config = await readAttackConfig(stringOption(args, 'config'), stringOption(args, 'attack'));
  const plugin = getAttack(config.name);
  if (plugin.kind === 'training-controlled' || plugin.preparePoison) {
    const fixed = knownAttacks().filter((n) => {
      const p = attackRegistry.get(n)!;
      return p.kind !== 'training-controlled' && !p.preparePoison;
    });
    throw new UsageError(
      `the ${config.name} trigger is learned while poisoning (it trains models), so it cannot be previewed on its own: ` +
        `preview it from a run that learned it with --run ID; without a run, preview works for ${fixed.join(', ')}`,
    );
  }
  const source = stringOption(args, 'data') ?? 'synthetic';
  const data = await loadPreviewData(source, seed);
  const attackSeed = deriveSeed(seed, 'attack');
  const png = attackPreviewPng(data, config, attackSeed, count, { scale });
  await fs.mkdir(path.dirname(path.resolve(out)), { recursive: true });
  await fs.writeFile(out, png);
  const shown = previewIndices(data, config, count).length;
  io.stdout.write(
    `wrote ${out}: ${plugin.name} (${JSON.stringify(config)}) on ${shown} non-target images of ${data.name}, attack seed ${attackSeed}\n` +
      'rows: clean / triggered / |triggered - clean| x10\n',
  );
  return 0;
}

/** --run ID: the trigger the run recorded, on the first non-target images of its test set. */
async function previewRun(id: string, args: ParsedArgs, out: string, count: number, scale: number, io: Io): Promise<number> {
  const { connectClient, namespaceFrom, requireTarget } = await import('./temporal');
  const { runTrigger } = await import('./attackRun');
  const target = requireTarget(stringOption(args, 'address'));
  const { client, connection } = await connectClient(target, namespaceFrom(stringOption(args, 'namespace')));
  let found;
  try {
    found = await runTrigger(client, id);
  } finally {
    await connection.close();
  }
  const { storeFromEnv } = await import('../store');
  const { decodeDatasetWithMeta } = await import('../core/data/codec');
  const { recordedTriggerPreviewPng } = await import('../core/attacks/learnedPreview');
  const store = storeFromEnv();
  const test = decodeDatasetWithMeta(await store.get(found.test), found.test.uri).dataset;
  const { png, rows } = await recordedTriggerPreviewPng(
    test,
    { config: found.attack, attackSeed: found.attackSeed, triggerParameters: found.poison.triggerParameters },
    (ref) => store.get(ref),
    count,
    { scale },
  );
  await fs.mkdir(path.dirname(path.resolve(out)), { recursive: true });
  await fs.writeFile(out, png);
  const shown = previewIndices(test, found.attack, count).length;
  io.stdout.write(
    `wrote ${out}: the ${found.poison.attack} trigger of run ${id} on ${shown} non-target images of its test set, attack seed ${found.attackSeed}\n` +
      `rows: ${rows.map((r) => r.toLowerCase()).join(' / ')}\n`,
  );
  return 0;
}

/** `ntml attack list`. */
export async function attackListCmd(_args: ParsedArgs, io: Io): Promise<number> {
  return listAttacks(io);
}

/** `ntml attack preview`: a bad attack config is a usage error (2), an unreadable data set a failure (1). */
export async function attackPreviewCmd(args: ParsedArgs, io: Io): Promise<number> {
  try {
    return await preview(args, io);
  } catch (err) {
    if (err instanceof AttackConfigError) throw new UsageError(`attack config: ${err.message}`);
    if (err instanceof DatasetError) throw new UserError(err.message);
    throw err;
  }
}

/** `ntml attack ...` in this process (tests): the whole command line, exit code returned. */
export async function attackCommand(argv: string[], io: Io = { stdout: process.stdout, stderr: process.stderr }): Promise<number> {
  return (await import('./program')).runCli(['attack', ...argv], io);
}
