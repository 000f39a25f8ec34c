/**
 * The purify report's NT-ML lines (core/report/purifyMarkdown.ts): protection mode claims no
 * poisoning and no backdoor it cannot know; a skipped split stage and a high proxy ASR are
 * flagged; split distillation's per-epoch diagnostics are a table; the split line names t^ as
 * estimated, or as drawn among tied classes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { purifyMarkdown, splitLine } from '../../core/report/purifyMarkdown';
import type { PurifyReport } from '../../core/report/records';
import type { EpochRecord } from '../../core/train/epochLoop';

const ref = { uri: 'file:///x', sha256: '0'.repeat(64), bytes: 1 };

function report(over: Partial<PurifyReport>): PurifyReport {
  return {
    runId: 'r1',
    mode: 'evaluation',
    seed: 1,
    data: {
      source: 'synthetic',
      trainSize: 2000,
      cleanBudget: 100,
      cleanFit: 80,
      cleanHeldOut: 20,
      testSize: 1000,
      backdoorTestSize: 900,
      poisonedCount: 200,
      shape: [32, 32, 3],
      numClasses: 10,
    },
    attack: 'badnets',
    defense: 'NT-ML',
    metrics: { standard: { acc: 90, asr: 100 }, ntStudent: { acc: 50, asr: 60 }, teacher: { acc: 88, asr: 40 }, final: { acc: 89, asr: 2 } },
    der: 99,
    stages: [],
    histories: {},
    skippedCheckpoints: [],
    models: { standard: ref, final: ref },
    selectionRule: 'every stage keeps its last epoch (no selection)',
    backend: 'tensorflow',
    ...over,
  };
}

const epochs = (proxies: number[]): EpochRecord[] =>
  proxies.map((p, i) => ({
    epoch: i + 1,
    loss: 0.1,
    seconds: 1,
    images: 1000,
    learningRate: 0.01,
    diagnostics: { acc: 80, targetMass: 0.05, targetMassClean: 0.04, targetMassNoise: 0.3, suspected: 150, proxyAsr: p },
  }));

test('purify report, evaluation mode: poisoned count, "backdoored" f_std, the split line with its evidence and the per-epoch table', () => {
  const md = purifyMarkdown(
    report({
      split: { estimatedTarget: 0, keptFraction: 0.81, excessShare: 0.09, suspectedCount: 150, overPrediction: 0.085 },
      histories: { splitDistillation: epochs([0.01, 0.02, 0.05]) },
    }),
  );
  assert.match(md, /2000 training images \(200 poisoned\)/);
  assert.match(md, /\| backdoored \(standard training\) \|/);
  assert.match(md, /Split distillation: estimated target class 0, distilled on 81\.0% of the training inputs\. Evidence: .*excess for t\^ 9\.0%.*150 suspected-poisoned inputs; f_std's over-prediction of t\^ beyond the clean set 8\.5%/);
  assert.match(md, /\| epoch \| t\^ mass, kept % \| clean % \| noise % \| poisoned % \| suspected \| proxy ASR % \|/);
  assert.match(md, /\| 3 \| 5\.0 \| 4\.0 \| 30\.0 \| - \| 150 \| 5\.0 \|/);
  assert.doesNotMatch(md, /Warning/);
});

test('purify report, protection mode: poisoning unknown, f_std not called backdoored; a skipped split stage is flagged', () => {
  const md = purifyMarkdown(
    report({
      mode: 'protection',
      attack: undefined,
      der: undefined,
      data: { ...report({}).data, poisonedCount: 0 },
      metrics: { standard: { acc: 90 }, final: { acc: 85 } },
      split: {
        estimatedTarget: 2,
        keptFraction: 0,
        excessShare: 0.07,
        suspectedCount: 40,
        overPrediction: 0.004,
        fallback: 'weak evidence for t^ = 2: f_std assigns 10.4% of the training inputs and 10.0% of the clean set to it, an over-prediction of 0.4%, below splitMinEvidence 5.0%',
      },
      histories: { splitDistillation: [] },
    }),
  );
  assert.match(md, /2000 training images \(poisoning unknown\)/);
  assert.doesNotMatch(md, /\(0 poisoned\)/);
  assert.doesNotMatch(md, /backdoored/);
  assert.match(md, /\| standard model f_std \(your training set; backdoor unknown\) \|/);
  assert.match(md, /Split distillation: \*\*skipped\*\*, estimated target class 2: weak evidence for t\^ = 2: .*over-prediction of 0\.4%/);
  assert.match(md, /\*\*Warning: split distillation was skipped; the purified student is the model after mutual learning alone\.\*\*/);
});

test('purify report: a proxy ASR above 20% in the kept split epoch is flagged; with selection the kept epoch is the best-scored one', () => {
  const high = purifyMarkdown(report({ split: { estimatedTarget: 0, keptFraction: 0.8 }, histories: { splitDistillation: epochs([0.1, 0.3, 0.6]) } }));
  assert.match(high, /\*\*Warning: the purified student sends 60\.0% of the suspected-poisoned training inputs to class 0 \(proxy ASR above 20\.0%\)/);
  // splitStop proxyAsr kept epoch 1 (scores: 1, then -1 once the limit was passed)
  const stopped = epochs([0.1, 0.3, 0.6]).map((e, i) => ({ ...e, score: i === 0 ? 1 : -1 }));
  const md = purifyMarkdown(report({ split: { estimatedTarget: 0, keptFraction: 0.8 }, histories: { splitDistillation: stopped } }));
  assert.doesNotMatch(md, /Warning/);
  // a split summary without the new fields (records stored before them) still renders, without the evidence
  assert.match(md, /distilled on 80\.0% of the training inputs\.\n/);
});

test('a tie names the classes t^ was drawn among', () => {
  const md = purifyMarkdown(report({ split: { estimatedTarget: 3, keptFraction: 0.812, tiedClasses: [3, 5] } }));
  assert.match(md, /^Split distillation: t\^ = 3, drawn among tied classes 3, 5; distilled on 81\.2% of the training inputs\.$/m);
  assert.doesNotMatch(md, /estimated target class/);
});

test('a single top class, or a record without ties, reads as an estimate', () => {
  const one = splitLine({ estimatedTarget: 0, keptFraction: 0.9, tiedClasses: [0] });
  assert.equal(one, 'Split distillation: estimated target class 0, distilled on 90.0% of the training inputs.');
  assert.equal(splitLine({ estimatedTarget: 0, keptFraction: 0.9 }), one, 'records written before ties were kept');
  assert.doesNotMatch(purifyMarkdown(report({ split: undefined })), /Split distillation/);
});

test("purify report: a reused learned trigger is named in the data line, and no line claims one otherwise", () => {
  const reused = purifyMarkdown(report({ data: { ...report({}).data, triggerReusedFrom: 'the trigger of sweep attacks-cpu, cell 3c30' } }));
  assert.match(reused, /- data: .*; poisoned with the trigger of sweep attacks-cpu, cell 3c30, not optimised again/);
  assert.doesNotMatch(purifyMarkdown(report({})), /not optimised again/);
});
