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
import { commandUsage, intOption, parseArgs, stringOption, type CommandSpec } from './args';
import { UsageError } from './errors';
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

export const attackList: CommandSpec = {
  name: 'attack list',
  brief: 'the available attacks: name, kind, defaults',
  summary: 'List the registered attacks with their kind (dirty-label, clean-label, training-controlled) and default config.',
  options: [],
};

export const attackPreview: CommandSpec = {
  name: 'attack preview',
  brief: 'write a PNG showing an attack\'s trigger on a few images',
  synopsis: [
    'ntml attack preview --attack NAME [--config FILE.yaml] [--data synthetic|cifar10:PATH] [--seed N] --out FILE.png',
    'ntml attack preview --run ID [--address HOST:PORT] [--namespace NS] --out FILE.png',
  ],
  summary:
    'Draw clean images, the same images with the test-time trigger, and their difference (x10) as a PNG grid;\n' +
    'with --run, the trigger a purify run recorded (learned ones too: Input-Aware, Narcissus) on its own test images.',
  options: [
    {
      name: 'run',
      value: 'ID',
      help: 'a purify run (workflow id): its attack, seed, poison record and test set,\nread from its Temporal history and the store (replaces --attack,\n--config, --data, --seed)',
    },
    { name: 'address', value: 'HOST:PORT', help: 'with --run: the Temporal server (default $NTML_TEMPORAL_ADDRESS,\nelse the local stack)' },
    { name: 'namespace', value: 'NS', help: 'with --run: the Temporal namespace (default $NTML_NAMESPACE or default)' },
    { name: 'attack', value: 'NAME', help: 'the attack (see "ntml attack list"); optional when --config names it' },
    {
      name: 'config',
      value: 'FILE',
      help: 'attack config, YAML or JSON, e.g. "name: blended\\nalpha: 0.3"\n(a purify config works too: its `attack` section is used)',
    },
    { name: 'data', value: 'SOURCE', help: 'synthetic (default: the test split a purify run with --seed\ngenerates) or cifar10:PATH (the test_batch.bin in PATH)' },
    { name: 'seed', value: 'N', help: 'run seed (default 0); the attack seed is derived as in a purify\nrun with this seed, so seeded triggers (WaNet) match that run' },
    { name: 'count', value: 'N', help: 'number of images (columns), default 8' },
    { name: 'scale', value: 'N', help: 'nearest-neighbour magnification, default 4' },
    { name: 'out', value: 'FILE.png', help: 'where to write the PNG' },
  ],
  details:
    'Rows: clean images, triggered images, |triggered - clean| x 10 (clipped), for the first\nnon-target images of the data set (target class images are skipped, as in ASR).\n' +
    'From a run, learned triggers add what they are made of: Input-Aware the PATTERN G(x) and\nMASK m(x) of each image (from the stored generators), Narcissus the TRIGGER (its\nperturbation at mid-grey, +-linfRadius over the full range).',
};

function attackUsage(): string {
  return [
    'usage: ntml attack list',
    '       ntml attack preview --attack NAME [--config FILE] [--data synthetic|cifar10:PATH] [--seed N] --out FILE.png',
    '       ntml attack preview --run ID [--address HOST:PORT] [--namespace NS] --out FILE.png',
    '',
    'subcommands:',
    `  list       ${attackList.brief}`,
    `  preview    ${attackPreview.brief}`,
    '',
    'Run "ntml attack preview --help" for its options.',
  ].join('\n');
}

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

async function preview(argv: string[], io: Io): Promise<number> {
  const args = parseArgs(argv, attackPreview);
  if (args.help) {
    io.stdout.write(`${commandUsage(attackPreview)}\n`);
    return 0;
  }
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
async function previewRun(id: string, args: ReturnType<typeof parseArgs>, out: string, count: number, scale: number, io: Io): Promise<number> {
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

/** `ntml attack ...`; returns the exit code (0 ok, 2 bad command line or config, 1 other failures). */
export async function attackCommand(argv: string[], io: Io = { stdout: process.stdout, stderr: process.stderr }): Promise<number> {
  const [sub, ...rest] = argv;
  try {
    switch (sub) {
      case 'list': {
        const args = parseArgs(rest, attackList);
        if (args.help) {
          io.stdout.write(`${commandUsage(attackList)}\n`);
          return 0;
        }
        return listAttacks(io);
      }
      case 'preview':
        return await preview(rest, io);
      case '--help':
      case '-h':
      case 'help':
        io.stdout.write(`${attackUsage()}\n`);
        return 0;
      case undefined:
        throw new UsageError('missing attack subcommand (list or preview)', attackUsage());
      default:
        throw new UsageError(`unknown attack subcommand "${sub}" (expected list or preview)`, attackUsage());
    }
  } catch (err) {
    if (err instanceof UsageError) {
      if (err.message) io.stderr.write(`ntml: ${err.message}\n`);
      if (err.usage) io.stderr.write(`${err.message ? '\n' : ''}${err.usage}\n`);
      return 2;
    }
    if (err instanceof AttackConfigError) {
      io.stderr.write(`ntml: attack config: ${err.message}\n`);
      return 2;
    }
    if (err instanceof DatasetError) {
      io.stderr.write(`ntml: ${err.message}\n`);
      return 1;
    }
    throw err;
  }
}
