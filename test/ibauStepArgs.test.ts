/** bench/ibauStep's command line: documented defaults, typed flags, bad values and unknown flags refused naming them. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { UsageError } from '../cli/errors';

test('ibauStep: its documented flags parse with their defaults kept; bad values and unknown flags are refused', async () => {
  const { parseOptions } = await import('../bench/ibauStep');
  const defaults = parseOptions([]);
  assert.deepEqual({ ...defaults, out: undefined }, { arch: 'smallCnn', batch: 80, rounds: 3, outerSteps: 3, anpIterations: 5, out: undefined, name: 'ibau-step' });
  assert.equal(path.basename(defaults.out), 'results');
  assert.deepEqual(
    parseOptions(['--arch', 'tinyCnn', '--batch', '16', '--rounds', '1', '--outer-steps', '2', '--anp-iterations', '4', '--out', 'x', '--name', 'quiet']),
    { arch: 'tinyCnn', batch: 16, rounds: 1, outerSteps: 2, anpIterations: 4, out: path.resolve('x'), name: 'quiet' },
  );
  const refuses = (argv: string[], message: RegExp) =>
    assert.throws(
      () => parseOptions(argv),
      (err: unknown) => err instanceof UsageError && message.test(err.message) && /usage: ibauStep\.js/.test(err.message),
    );
  refuses(['--batch', '1'], /--batch/);
  refuses(['--outer-steps', '0'], /--outer-steps/);
  refuses(['--arch', 'vgg'], /--arch must be one of smallCnn, tinyCnn, resnet20, got "vgg"/);
  refuses(['--name', 'a/b'], /--name must be a file base name/);
  refuses(['--round', '3'], /^unknown option "--round"/);
});
