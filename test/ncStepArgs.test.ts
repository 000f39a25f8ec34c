/** bench/ncStep's command line: documented defaults, typed flags, and --passes refused outside 1..10 naming the value. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { UsageError } from '../cli/errors';

test('ncStep: its documented flags parse with their defaults kept; a bad --passes or an unknown flag is refused', async () => {
  const { parseOptions } = await import('../bench/ncStep');
  assert.deepEqual(parseOptions([]), { arch: 'smallCnn', steps: 20, rounds: 3, referenceSize: 1000, passes: [1, 10] });
  assert.deepEqual(parseOptions(['--arch', 'tinyCnn', '--steps', '5', '--rounds', '1', '--reference-size', '200', '--passes', '1,2,5']), {
    arch: 'tinyCnn',
    steps: 5,
    rounds: 1,
    referenceSize: 200,
    passes: [1, 2, 5],
  });
  const refuses = (argv: string[], message: RegExp) =>
    assert.throws(
      () => parseOptions(argv),
      (err: unknown) => err instanceof UsageError && message.test(err.message) && /usage: ncStep\.js/.test(err.message),
    );
  refuses(['--passes', '1,11'], /--passes must be a comma-separated list of integers in \[1, 10\], got "1,11"/);
  refuses(['--passes', '1,,2'], /--passes must be .*got "1,,2"/);
  refuses(['--passes', '2.5'], /--passes must be .*got "2\.5"/);
  refuses(['--reference-size', '5'], /--reference-size/);
  refuses(['--arch', 'vgg'], /--arch must be one of smallCnn, tinyCnn, resnet20, got "vgg"/);
  refuses(['--step', '3'], /^unknown option "--step"/);
});
