/** The purify report's split line: t^ as estimated, or as drawn among tied classes. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { purifyMarkdown, splitLine } from '../../core/report/purifyMarkdown';
import type { PurifyReport } from '../../core/report/records';

const ref = { uri: 'mem://x', sha256: '0'.repeat(64), bytes: 1 };

function report(split: PurifyReport['split']): PurifyReport {
  return {
    runId: 'r1',
    mode: 'evaluation',
    seed: 1,
    data: {
      source: 'synthetic',
      trainSize: 90,
      cleanBudget: 10,
      cleanFit: 8,
      cleanHeldOut: 2,
      testSize: 10,
      backdoorTestSize: 9,
      poisonedCount: 9,
      shape: [8, 8, 3],
      numClasses: 10,
    } as PurifyReport['data'],
    attack: 'badnets',
    defense: 'NT-ML',
    metrics: { standard: { acc: 90, asr: 99 }, final: { acc: 88, asr: 2 } },
    split,
    stages: [],
    histories: {},
    skippedCheckpoints: [],
    models: { standard: ref, final: ref },
    selectionRule: 'held-out',
    backend: 'tensorflow',
  };
}

test('a tie names the classes t^ was drawn among', () => {
  const md = purifyMarkdown(report({ estimatedTarget: 3, keptFraction: 0.812, tiedClasses: [3, 5] }));
  assert.match(md, /^Split distillation: t\^ = 3, drawn among tied classes 3, 5; distilled on 81\.2% of the training inputs\.$/m);
  assert.doesNotMatch(md, /estimated target class/);
});

test('a single top class, or a record without ties, reads as an estimate', () => {
  const one = splitLine({ estimatedTarget: 0, keptFraction: 0.9, tiedClasses: [0] });
  assert.equal(one, 'Split distillation: estimated target class 0, distilled on 90.0% of the training inputs.');
  assert.equal(splitLine({ estimatedTarget: 0, keptFraction: 0.9 }), one, 'records written before ties were kept');
  assert.doesNotMatch(purifyMarkdown(report(undefined)), /Split distillation/);
});
