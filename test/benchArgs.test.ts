/**
 * bench/args.ts, the bench scripts' one option parser: its errors (unknown option with the known
 * ones, missing value, positional, switch with a value) and typed readers, each error naming the
 * option and the bad value; then each converted script's parseOptions on its documented flags
 * and on an unknown one. No stack: the scripts run their benchmark only as the main module.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseBenchArgs, type OptionSpecs } from '../bench/args';
import { UsageError } from '../cli/errors';

const specs: OptionSpecs = {
  out: { type: 'string' },
  count: { type: 'string' },
  smoke: { type: 'boolean' },
  worker: { type: 'string', internal: true },
};
const parse = (...argv: string[]) => parseBenchArgs(argv, specs, 'usage: x.js [--out DIR]');
/** asserts a UsageError whose message matches */
const refuses = (f: () => unknown, message: RegExp) => assert.throws(f, (err: unknown) => err instanceof UsageError && message.test(err.message));

test('bench args: unknown options, positionals, missing values and valued switches are refused by name; the usage follows', () => {
  refuses(() => parse('--bogus', '1'), /^unknown option "--bogus"; options: --out, --count, --smoke\nusage: x\.js \[--out DIR\]$/);
  refuses(() => parse('-o', 'x'), /unknown option "-o"/);
  refuses(() => parse('--constructor', 'x'), /unknown option "--constructor"/);
  refuses(() => parse('stray'), /unexpected argument "stray"; options: --out/);
  refuses(() => parse('--out'), /^--out needs a value\n/);
  refuses(() => parse('--out', '--smoke'), /^--out needs a value/);
  refuses(() => parse('--out='), /^--out needs a value/);
  refuses(() => parse('--smoke=yes'), /^--smoke takes no value, got "yes"/);
  // the internal option is accepted but not advertised
  assert.equal(parse('--worker', 'w').text('worker'), 'w');
});

test('bench args: values by space or =, switches, the last of a repeated option, fallbacks when absent', () => {
  const a = parse('--out', 'a', '--smoke', '--count=7', '--out', 'b');
  assert.deepEqual([a.text('out'), a.flag('smoke'), a.integer('count', 1), a.has('worker')], ['b', true, 7, false]);
  assert.equal(parse('--out=--x').text('out'), '--x', 'an inline value may start with dashes');
  const none = parse();
  assert.deepEqual([none.text('out'), none.text('out', 'd'), none.flag('smoke'), none.integer('count', undefined), none.path('out', '/f')], [undefined, 'd', false, undefined, '/f']);
  assert.equal(parse('--out', 'rel').path('out', '/f'), path.resolve('rel'));
});

test('bench args: typed readers name the option and the bad value', () => {
  const one = (value: string) => parse('--count', value);
  assert.equal(one('12').integer('count', 1), 12);
  for (const bad of ['0', '-3', '2.5', 'x', ' ']) refuses(() => one(bad).integer('count', 1), new RegExp(`^--count must be a positive integer, got ${JSON.stringify(JSON.stringify(bad)).slice(1, -1)}`));
  refuses(() => one('3').integer('count', 1, 50), /^--count must be an integer >= 50, got "3"/);
  assert.equal(one('0').integer('count', 1, 0), 0);

  assert.equal(one('0.25').positiveNumber('count', 1), 0.25);
  refuses(() => one('0').positiveNumber('count', 1), /^--count must be a positive number, got "0"/);
  refuses(() => one('Infinity').positiveNumber('count', 1), /got "Infinity"/);
  assert.equal(one('0.9').numberIn('count', 0, 0, 0.9), 0.9);
  refuses(() => one('0.95').numberIn('count', 0, 0, 0.9), /^--count must be a number in \[0, 0\.9\], got "0\.95"/);

  assert.equal(one('ci').choice('count', ['cpu', 'ci'], 'cpu'), 'ci');
  refuses(() => one('gpu').choice('count', ['cpu', 'ci'], 'cpu'), /^--count must be one of cpu, ci, got "gpu"/);

  assert.deepEqual(one('b,a').list('count', ['a', 'b', 'c'], ['a']), ['b', 'a']);
  assert.deepEqual(parse().list('count', ['a', 'b'], ['a']), ['a']);
  refuses(() => one('a,z,y').list('count', ['a', 'b'], ['a']), /^--count must be a comma-separated list of a, b, got "a,z,y" \(unknown: z, y\)/);
  refuses(() => one(',').list('count', ['a', 'b'], ['a']), /^--count must be a comma-separated list of a, b, got ","/);

  assert.deepEqual(one('3,1').integers('count', [1]), [3, 1]);
  refuses(() => one('1,x').integers('count', [1]), /^--count must be a positive integer, got "x"/);

  assert.equal(one('run-1.b_2').baseName('count', 'd'), 'run-1.b_2');
  refuses(() => one('../x').baseName('count', 'd'), /^--count must be a file base name .*, got "\.\.\/x"/);
});

test('stageCost: its documented flags parse with their defaults kept; an unknown flag is refused', async () => {
  const { parseOptions } = await import('../bench/stageCost');
  const d = parseOptions([]);
  assert.deepEqual(
    { ...d, threads: 0, out: '' },
    { tier: 'cpu', trainSubset: 20000, threads: 0, groups: ['ntml', 'ft', 'fp', 'nad', 'anp', 'ibau', 'audit'], smoke: false, pytorch: true, out: '', name: 'stage-cost', referenceSize: 1000, worker: undefined },
  );
  assert.equal(d.threads, os.availableParallelism());
  const o = parseOptions(['--tier', 'ci', '--train-subset', '500', '--threads', '2', '--groups', 'anp,ibau', '--reference-size', '200', '--no-pytorch', '--out', 'x', '--name', 'sc-1']);
  assert.deepEqual(
    [o.tier, o.trainSubset, o.threads, o.groups, o.referenceSize, o.pytorch, o.out, o.name, o.smoke],
    ['ci', 500, 2, ['anp', 'ibau'], 200, false, path.resolve('x'), 'sc-1', false],
  );
  assert.equal(parseOptions(['--smoke']).tier, 'ci', '--smoke runs the ci tier');
  assert.deepEqual(parseOptions(['--worker', 'ft', '--work', '/tmp/w']).worker, { group: 'ft', work: '/tmp/w' });
  refuses(() => parseOptions(['--groups', 'ntml,nope']), /--groups must be a comma-separated list of ntml, ft, fp, nad, anp, ibau, audit, got "ntml,nope"/);
  refuses(() => parseOptions(['--work', '/tmp/w']), /--work is only for .*--worker/);
  refuses(() => parseOptions(['--tiers', 'ci']), /^unknown option "--tiers"; options: --tier, --train-subset, .*--name\nusage: stageCost\.js/);
});

test('throughput: its documented flags parse with their defaults kept; an unknown flag is refused', async () => {
  const { parseOptions } = await import('../bench/throughput');
  const d = parseOptions([]);
  assert.deepEqual(
    [d.rounds, d.images, d.epochs, d.batchSize, d.warmupImages, d.archs, d.augment, d.withPlain, d.pytorch, d.name, d.worker],
    [3, 2560, 1, 128, 512, ['resnet20', 'smallCnn'], true, false, true, 'throughput', undefined],
  );
  const o = parseOptions(['--rounds', '1', '--images', '256', '--epochs', '2', '--batch-size', '64', '--threads', '1', '--archs', 'smallCnn', '--augment', 'off', '--with-plain', '--no-pytorch', '--out', 'y', '--name', 'tp']);
  assert.deepEqual(
    [o.rounds, o.images, o.epochs, o.batchSize, o.threads, o.archs, o.augment, o.withPlain, o.pytorch, o.out, o.name],
    [1, 256, 2, 64, 1, ['smallCnn'], false, true, false, path.resolve('y'), 'tp'],
  );
  assert.equal(d.inferenceBatchSize, 128, 'inference batch defaults to the training batch');
  assert.equal(parseOptions(['--batch-size', '64']).inferenceBatchSize, 64);
  assert.equal(parseOptions(['--batch-size', '64', '--inference-batch-size', '512']).inferenceBatchSize, 512);
  refuses(() => parseOptions(['--inference-batch-size', '0']), /--inference-batch-size/);
  assert.deepEqual(parseOptions(['--worker', 'smallCnn', '--round', '2', '--plain']).worker, { arch: 'smallCnn', round: 1, plain: true });
  refuses(() => parseOptions(['--augment', 'maybe']), /--augment must be one of on, off, got "maybe"/);
  refuses(() => parseOptions(['--round', '2']), /--round is only for .*--worker/);
  refuses(() => parseOptions(['--arch', 'smallCnn']), /^unknown option "--arch"; options: --rounds, .*--archs, .*\nusage: throughput\.js/);
});

test('recipeCompare: its documented flags parse with their defaults kept; an unknown flag is refused', async () => {
  const { parseOptions } = await import('../bench/recipeCompare');
  const { tierRecipe } = await import('../schemas/purify');
  const d = parseOptions([]);
  assert.deepEqual(
    [d.seeds, d.sets, d.recipes, d.frameworks, d.trainSubset, d.epochs, d.oneCycleLearningRate, d.warmupFraction],
    [[1, 2, 3], ['clean', 'badnets'], ['cosine', 'oneCycle'], ['ntml', 'pytorch'], 20000, undefined, tierRecipe('cpu').learningRate, tierRecipe('cpu').warmupFraction ?? 0.25],
  );
  const o = parseOptions(['--seeds', '4,5', '--sets', 'badnets', '--recipes', 'oneCycle', '--frameworks', 'ntml', '--train-subset', '1000', '--epochs', '1', '--one-cycle-lr', '0.2', '--warmup', '0', '--threads', '2', '--out', 'r', '--work', 'w']);
  assert.deepEqual(
    [o.seeds, o.sets, o.recipes, o.frameworks, o.trainSubset, o.epochs, o.oneCycleLearningRate, o.warmupFraction, o.threads, o.out, o.work],
    [[4, 5], ['badnets'], ['oneCycle'], ['ntml'], 1000, 1, 0.2, 0, 2, path.resolve('r'), path.resolve('w')],
  );
  refuses(() => parseOptions(['--warmup', '1']), /--warmup must be a number in \[0, 0\.9\], got "1"/);
  refuses(() => parseOptions(['--seed', '1']), /^unknown option "--seed"; options: --seeds, .*\nusage: recipeCompare\.js/);
});

test('auditDetection: both commands\' documented flags parse; an unknown flag is refused as a usage error (exit code 2)', async () => {
  const { parseOptions } = await import('../bench/auditDetection');
  const a = parseOptions('detection', ['--sweep', 's', '--clean-sweep', 'c', '--out', 'o', '--policy', 'p.yaml', '--reference-size', '80', '--reference-seed', '3', '--address', 'h:7233']);
  assert.deepEqual(
    [a.text('sweep'), a.text('clean-sweep'), a.text('out'), a.text('policy'), a.integer('reference-size', 500, 50), a.integer('reference-seed', 0, 0), a.text('address')],
    ['s', 'c', 'o', 'p.yaml', 80, 3, 'h:7233'],
  );
  const c = parseOptions('clean-data', ['--spec', 'f.yaml', '--seed', '0', '--out-dir', 'd', '--attack', 'badnets']);
  assert.deepEqual([c.text('spec'), c.integer('seed', 0, 0), c.text('out-dir'), c.text('attack')], ['f.yaml', 0, 'd', 'badnets']);
  refuses(() => parseOptions('clean-data', ['--sweep', 's']), /^unknown option "--sweep"; options: --spec, --seed, --out-dir, --attack\nusage: node dist\/bench\/auditDetection\.js/);
  refuses(() => parseOptions('detection', ['--sweep']), /^--sweep needs a value/);
});

test('soak: its documented flags parse with their defaults kept; an unknown flag is refused', async () => {
  const { parseOptions } = await import('../bench/soak');
  const d = parseOptions([]);
  assert.deepEqual({ ...d, out: '' }, { cells: 50, epochs: 2, concurrency: 2, seed: 1, minInterval: 20, maxInterval: 60, out: '' });
  const o = parseOptions(['--cells', '4', '--epochs', '1', '--concurrency', '1', '--seed', '2', '--min-interval', '0.5', '--max-interval', '1.5', '--out', 's']);
  assert.deepEqual(o, { cells: 4, epochs: 1, concurrency: 1, seed: 2, minInterval: 0.5, maxInterval: 1.5, out: path.resolve('s') });
  refuses(() => parseOptions(['--cells', '3']), /--cells must be an even number/);
  refuses(() => parseOptions(['--min-interval', '70']), /--min-interval \(70\) must not exceed --max-interval \(60\)/);
  refuses(() => parseOptions(['--interval', '5']), /^unknown option "--interval"; options: --cells, .*--out\nusage: soak\.js/);
});
