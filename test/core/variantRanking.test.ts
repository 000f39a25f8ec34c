/**
 * The screen's decision rule read off the report (issue 20): defense variants ranked by mean DER
 * over the attacks, each attack weighing the same, ties to the lower cost, and a variant that
 * missed an attack never ranked.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildSweepReport } from '../../core/report/sweepReport';
import { rankVariants } from '../../core/report/variantRanking';
import { cell, group } from '../support/sweepRecords';

const costly = (seconds: number) => [{ stage: 'splitDistillation', seconds }];

test('variants: mean of per-attack mean DERs, every attack weighing the same whatever its seeds', () => {
  const records = [
    // three seeds of badnets at 90, one seed of wanet at 60: per-attack means 90 and 60 -> 75 (a cell mean would give 82.5)
    ...group('badnets', 'ntml', '100', 90, 1, 70),
    cell('wanet', 'ntml', '100', 101, { acc: 68, asr: 30, der: 60, sAcc: 71 }),
    ...group('badnets', 'none', '100', 50, 0, 80),
  ];
  const [v, ...rest] = rankVariants(buildSweepReport(records, { sweep: 's' }).rows);
  assert.equal(rest.length, 0, 'the undefended rows are not a variant');
  assert.equal(v.defense, 'ntml');
  assert.deepEqual(v.attacks, ['badnets', 'wanet']);
  assert.equal(v.meanDer, 75);
  assert.deepEqual(v.worst, { attack: 'wanet', der: 60 });
  assert.deepEqual(v.seeds, { min: 1, max: 3 });
  // ACC drop per attack: badnets 80 - 70, wanet 71 - 68
  assert.equal(v.meanAccDrop, 6.5);
  assert.equal(v.rank, 1);
});

test('variants: ranked by mean DER, a tie goes to the lower cost, an incomplete variant is listed unranked', () => {
  const attacks = ['badnets', 'wanet', 'inputaware'];
  const at = (label: string, ders: number[], seconds: number) =>
    attacks.flatMap((a, i) => [1, 2].map((seed) => cell(a, 'ntml', '100', seed, { acc: 70, asr: 5, der: ders[i], stages: costly(seconds) }, label)));
  const records = [
    ...at('ntml', [95, 60, 70], 300), // 75.0
    ...at('ntml(ml=clean)', [85, 70, 70], 90), // 75.0: tie with the default, cheaper -> ahead of it
    ...at('ntml(splitGate=drop)', [94, 80, 75], 320), // 83.0: best
    // best on the attacks it ran, but it never ran inputaware: not ranked
    ...attacks.slice(0, 2).flatMap((a) => [1, 2].map((seed) => cell(a, 'ntml', '100', seed, { acc: 70, asr: 1, der: 99 }, 'ntml(splitStop=proxyAsr)'))),
  ];
  const report = buildSweepReport(records, { sweep: 's' });
  const ranked = rankVariants(report.rows);
  assert.deepEqual(
    ranked.map((v) => [v.defense, v.rank]),
    [
      ['ntml(splitGate=drop)', 1],
      ['ntml(ml=clean)', 2],
      ['ntml', 3],
      ['ntml(splitStop=proxyAsr)', null],
    ],
  );
  assert.deepEqual(ranked[3].missing, ['inputaware']);
  assert.equal(ranked[1].meanComputeSeconds, 90);
  // a DER difference of 0.1 is not a tie: the dearer variant with the higher mean stays ahead
  const near = rankVariants(buildSweepReport([...at('a', [80, 80, 80], 500), ...at('b', [79.9, 79.9, 79.9], 10)], { sweep: 's' }).rows);
  assert.deepEqual(near.map((v) => v.defense), ['a', 'b']);

  // the report carries the ranking in report.json and as its own section after the verdict
  assert.deepEqual(report.json.variants, ranked);
  const md = report.markdown;
  assert.ok(md.indexOf('## Defense variants across attacks') > md.indexOf('## Verdict'));
  assert.match(md, /\| 1 \| ntml\(splitGate=drop\) \| 100 \| tier default \| 3 \| 2 \| 83\.0 \| 75\.0 \(inputaware\) \| 10\.0 \| 320 \|/);
  assert.match(md, /\| – \(missing inputaware\) \| ntml\(splitStop=proxyAsr\) \|/);
});

test('variants: each clean budget ranks on its own attacks', () => {
  const records = [
    cell('badnets', 'ft', '100', 1, { acc: 70, asr: 5, der: 70 }),
    cell('badnets', 'ft', '5%', 1, { acc: 70, asr: 5, der: 90 }),
    cell('wanet', 'ft', '5%', 1, { acc: 70, asr: 5, der: 80 }),
    cell('badnets', 'nad', '5%', 1, { acc: 70, asr: 5, der: 60 }),
  ];
  const ranked = rankVariants(buildSweepReport(records, { sweep: 's' }).rows);
  assert.deepEqual(
    ranked.map((v) => [v.defense, v.cleanBudget, v.rank, v.missing]),
    [
      // budgets in natural order (5 before 100)
      ['ft', '5%', 1, []],
      ['nad', '5%', null, ['wanet']],
      ['ft', '100', 1, []], // at 100 only badnets ran: ft is complete there
    ],
  );
});
