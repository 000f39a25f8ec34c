/**
 * The headline table's report on synthetic cell records: published rows beside ours with their
 * tier, a verdict that follows the numbers, per-stage cost, superseded records, and an ASR-vs-ACC
 * plot whose markers never hide each other.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildSweepReport } from '../../core/report/sweepReport';
import { asrVsAccSvg, placeMarkers, renderSweepReport } from '../../core/report/svgPlots';
import { NOT_IN_REFERENCE, PUBLISHED_TIER, publishedRow, publishedText } from '../../core/report/published';
import type { SweepCellRecord } from '../../core/report/records';
import { cell, group } from '../support/sweepRecords';

test('published rows: beside each row by config names, labelled as another tier; none for Narcissus or NT-ML', () => {
  // the data module holds protocol.md's anchor numbers (BadNets / FT: 89.96 / 1.48; DER 96.1)
  assert.deepEqual(publishedRow('badnets', 'ft'), { acc: 89.96, asr: 1.48, der: 96.1 });
  assert.deepEqual(publishedRow('blended', 'none'), { acc: 93.47, asr: 99.92 });
  assert.equal(publishedRow('narcissus', 'ft'), undefined);
  assert.equal(publishedRow('badnets', 'ntml'), undefined);

  const records = [
    ...group('badnets', 'ft', '100', 90, 1, 75, 'ft(steps=20)'),
    ...group('badnets', 'ntml', '100', 95, 1, 76),
    ...group('narcissus', 'ft', '5%', 80, 1, 74),
    ...group('blended', 'none', '100', 50, 0, 80),
  ];
  const r = buildSweepReport(records, { sweep: 'table', seedRole: 'report' });
  const line = (attack: string, defense: string) => r.markdown.split('\n').find((l) => l.startsWith(`| ${attack} | ${defense} |`))!;
  // a label with settings still gets its defense's row: it is matched by the config's name
  assert.ok(line('badnets', 'ft(steps=20)').endsWith(`| ${publishedText(publishedRow('badnets', 'ft'))} |`), line('badnets', 'ft(steps=20)'));
  assert.ok(line('badnets', 'ft(steps=20)').endsWith('| 90.0 / 1.5; DER 96.1 |'));
  assert.ok(line('blended', 'none').endsWith('| 93.5 / 99.9 |'), 'the undefended row has no DER');
  assert.ok(line('narcissus', 'ft').endsWith(`| ${NOT_IN_REFERENCE} |`));
  assert.ok(line('badnets', 'ntml').endsWith(`| ${NOT_IN_REFERENCE} |`));
  assert.match(r.markdown, /published† ACC \/ ASR; DER \|/);
  assert.ok(r.markdown.includes(`† Different tier: BackdoorBench leaderboard, ${PUBLISHED_TIER}`));
  assert.match(PUBLISHED_TIER, /PreAct-ResNet18, 100 epochs, CIFAR-10, poisoning rate 10%/);
  assert.equal(r.json.published.tier, PUBLISHED_TIER);
  const ftRow = r.rows.find((x) => x.defense === 'ft(steps=20)')!;
  assert.equal(ftRow.defenseName, 'ft');
  assert.deepEqual(ftRow.published, publishedRow('badnets', 'ft'));
  // CSV: the published numbers in their own columns, empty where the reference has none
  const csv = r.csv.trim().split('\n');
  const head = csv[0].split(',');
  const col = (row: string, name: string) => row.split(',')[head.indexOf(name)];
  const badnetsFt = csv.find((l) => l.startsWith('table,badnets,ft(steps=20)'))!;
  assert.equal(col(badnetsFt, 'published_der'), '96.1');
  assert.equal(col(csv.find((l) => l.startsWith('table,narcissus,ft'))!, 'published_acc'), '');
});

test('verdict: the wording follows the numbers (intervals apart, overlapping, lower), ACC cost, and no verdict without NT-ML@100', () => {
  const verdictOf = (records: SweepCellRecord[]) => buildSweepReport(records, { sweep: 'table' }).verdict;
  const attacks = ['badnets', 'blended'];
  const ntml = attacks.flatMap((a) => group(a, 'ntml', '100', 95, 1, 76));

  // gap 10 > both stds (1): apart on every attack
  const apart = verdictOf([...ntml, ...attacks.flatMap((a) => group(a, 'ft', '100', 85, 1, 78))]);
  assert.match(apart, /Against ft at \|D_c\| = 100 \(2 attacks\), NT-ML's DER is higher on every one of the 2 attacks, with the ±1 std intervals apart on each/);
  assert.match(apart, /mean DER difference is \+10\.0 points, and NT-ML's clean accuracy is 2\.0 points lower on average/);
  assert.match(apart, /own clean-accuracy cost against the undefended model is 4\.0 points/);

  // the same means with wide seeds: only "higher on mean"
  const overlap = verdictOf([...ntml, ...attacks.flatMap((a) => group(a, 'ft', '100', 85, 12, 78))]);
  assert.notEqual(overlap, apart);
  assert.match(overlap, /NT-ML's DER is higher on mean for 2 of 2 attacks \(the ±1 std intervals overlap for every attack\)/);
  assert.doesNotMatch(overlap, /intervals apart on each/);

  // one attack lower, apart; the other higher on mean only
  const mixed = verdictOf([...ntml, ...group('badnets', 'ft', '100', 99, 1, 76), ...group('blended', 'ft', '100', 94, 3, 76)]);
  assert.match(mixed, /higher on mean for 1 of 2 attacks, lower for 1 \(lower with the intervals apart for badnets; the intervals overlap for the rest\)/);
  assert.match(mixed, /clean accuracy is the same on average/);

  // a baseline at its own 5% budget gets its own sentence, after the 100 one
  const budgets = verdictOf([...ntml, ...attacks.flatMap((a) => [...group(a, 'anp', '100', 80, 1, 70), ...group(a, 'anp', '5%', 96, 0.5, 77)])]);
  const at100 = budgets.indexOf('Against anp at |D_c| = 100');
  const at5 = budgets.indexOf('Against anp at |D_c| = 5%');
  assert.ok(at100 >= 0 && at5 > at100, budgets);
  assert.match(budgets.slice(at5), /^Against anp at \|D_c\| = 5% \(2 attacks\), NT-ML's DER is higher on mean for 0 of 2 attacks, lower for 2/);

  // a single seed has no std: never "apart", whatever the gap
  const single = verdictOf([cell('badnets', 'ntml', '100', 101, { acc: 76, asr: 2, der: 99 }), cell('badnets', 'ft', '100', 101, { acc: 76, asr: 90, der: 52 })]);
  assert.match(single, /from the means over 1 seed per group/);
  assert.match(single, /higher on mean for 1 of 1 attack \(the ±1 std intervals overlap for every attack\)/);

  assert.match(verdictOf(attacks.flatMap((a) => group(a, 'ft', '100', 85, 1, 78))), /No completed NT-ML cells at \|D_c\| = 100: no verdict\./);
  // two NT-ML variants: each gets its own sentences, named by its label
  const variants = verdictOf([...ntml, ...group('badnets', 'ntml', '100', 80, 1, 76, 'ntml(ntLabel=hard)'), ...group('badnets', 'ft', '100', 85, 1, 78)]);
  assert.match(variants, /NT-ML as ntml at \|D_c\| = 100: Against ft at \|D_c\| = 100 \(1 attack\), NT-ML as ntml's DER is higher on the one attack, with the ±1 std intervals apart;/);
  assert.match(variants, /NT-ML as ntml\(ntLabel=hard\)'s DER is lower on the one attack, with the ±1 std intervals apart/);
  // never a claim stronger than the numbers
  for (const v of [apart, overlap, mixed, budgets, single]) assert.doesNotMatch(v, /significant(ly)? (better|higher)|outperform|better than/i);
  // and it is the report's Verdict section
  assert.ok(buildSweepReport([...ntml], { sweep: 'table' }).markdown.includes('## Verdict'));
});

test('cost per stage: mean ± std of each stage over seeds, cached ones counted with their original seconds', () => {
  const stages = (train: number, def: number, cached: boolean) => [
    { stage: 'standardTraining', seconds: train, cached },
    { stage: 'defense', seconds: def },
  ];
  const records = [
    cell('badnets', 'ft', '100', 101, { acc: 75, asr: 5, der: 90, stages: stages(300, 20, false) }),
    cell('badnets', 'ft', '100', 102, { acc: 75, asr: 5, der: 90, stages: stages(310, 30, true) }),
    cell('badnets', 'ft', '100', 103, { acc: 75, asr: 5, der: 90, stages: stages(320, 40, true) }),
  ];
  const r = buildSweepReport(records, { sweep: 'table' });
  const costs = r.rows[0].stageCosts;
  assert.deepEqual(costs.map((c) => c.stage), ['standardTraining', 'defense']);
  assert.equal(costs[0].seconds.mean, 310);
  assert.equal(costs[0].seconds.std, 10);
  assert.equal(costs[0].cached, 2);
  assert.equal(costs[1].seconds.mean, 30);
  // compute s/cell keeps counting only what each cell ran itself: (320 + 30 + 40) / 3
  assert.equal(r.rows[0].computeSeconds!.mean, 130);
  assert.ok(r.markdown.includes('| badnets | ft | 100 | tier default | 3 | standardTraining 310.0 ± 10.0 (2 of 3 from the cache), defense 30.0 ± 10.0 |'));
});

test('superseded records: with the spec cell ids, records under other (older) ids are left out and counted', () => {
  const current = group('badnets', 'ft', '100', 90, 1, 75);
  const older = group('badnets', 'ft', '100', 60, 1, 70); // the same cells under path-hashed ids
  const all = buildSweepReport([...current, ...older], { sweep: 'table' });
  assert.equal(all.rows[0].n, 6, 'without the ids both copies count');
  const r = buildSweepReport([...older, ...current], { sweep: 'table', cellIds: current.map((c) => c.cellId) });
  assert.equal(r.rows[0].n, 3);
  assert.equal(r.rows[0].der!.mean, 90);
  assert.equal(r.json.superseded, 3);
  assert.match(r.markdown, /3 stored cell records under cell ids that are not the spec's \(older ids, which hashed the data's path\) left out/);
});

interface Marker {
  cls: string;
  defense?: string;
  cx: number;
  cy: number;
  r: number;
  d: string;
}
function markersOf(panel: string): Marker[] {
  return [...panel.matchAll(/<path class="(marker|undefended)"([^>]*)>/g)].map((m) => {
    const attr = (name: string) => m[2].match(new RegExp(` ${name}="([^"]*)"`))?.[1];
    return { cls: m[1], defense: attr('data-defense'), cx: Number(attr('data-cx')), cy: Number(attr('data-cy')), r: Number(attr('data-r')), d: attr('d')! };
  });
}

test('ASR vs ACC: coincident points (undefended, FT that changed nothing, a twin defense) all stay visible, each joined to its true place', () => {
  // FT and FP leave the backdoored model as it was: the same ACC/ASR as the undefended model, seed for seed
  const same = (defense: string) => [101, 102, 103].map((seed) => cell('badnets', defense, '100', seed, { acc: 80, asr: 97, der: 50, sAcc: 80, sAsr: 97 }));
  const records = [
    ...same('ft'),
    ...same('fp'),
    ...same('none'),
    ...[101, 102, 103].map((seed) => cell('badnets', 'ntml', '100', seed, { acc: 76, asr: 3, der: 95, sAcc: 80, sAsr: 97 })),
  ];
  const rows = buildSweepReport(records, { sweep: 'table' }).rows;
  const svg = asrVsAccSvg(rows);
  const marks = markersOf(svg);
  assert.equal(marks.length, 5, 'the undefended model and four defenses');
  for (let i = 0; i < marks.length; i++)
    for (let j = i + 1; j < marks.length; j++) {
      const dist = Math.hypot(marks[i].cx - marks[j].cx, marks[i].cy - marks[j].cy);
      assert.ok(dist >= marks[i].r + marks[j].r, `${marks[i].defense ?? 'undefended'} and ${marks[j].defense ?? 'undefended'} overlap: centres ${dist.toFixed(1)} px apart`);
    }
  // the drawn shape is where its centre says: every vertex within its radius, one on it
  for (const m of marks) {
    const nums = [...m.d.matchAll(/-?[\d.]+/g)].map((x) => Number(x[0]));
    const pts = m.d.includes('A') ? [[nums[0], nums[1]]] : Array.from({ length: nums.length / 2 }, (_, k) => [nums[2 * k], nums[2 * k + 1]]);
    const dists = pts.map(([x, y]) => Math.hypot(x - m.cx, y - m.cy));
    assert.ok(Math.max(...dists) <= m.r + 0.02 && Math.max(...dists) >= m.r - 0.02, `${m.defense}: vertices at ${dists.map((v) => v.toFixed(2))}`);
  }
  // the undefended diamond stays on its point (ACC 80, ASR 97 in the 260 px area at left 58, top 36)
  const u = marks.find((m) => m.cls === 'undefended')!;
  assert.ok(Math.abs(u.cx - (58 + 0.8 * 260)) < 0.01 && Math.abs(u.cy - (36 + 260 - 0.97 * 260)) < 0.01);
  // the three defenses on that point moved, each with a leader line from the true point to its marker; NT-ML's did not
  const leaders = [...svg.matchAll(/<line x1="([\d.]+)" y1="([\d.]+)" x2="([\d.]+)" y2="([\d.]+)"[^>]*class="leader"/g)];
  assert.equal(leaders.length, 3);
  for (const l of leaders) {
    assert.ok(Math.abs(Number(l[1]) - u.cx) < 0.01 && Math.abs(Number(l[2]) - u.cy) < 0.01, 'a leader starts at the shared true point');
    assert.ok(marks.some((m) => m.cls === 'marker' && Math.abs(m.cx - Number(l[3])) < 0.01 && Math.abs(m.cy - Number(l[4])) < 0.01), 'and ends at a marker');
  }
  assert.ok(svg.includes('data-defense="ntml" data-shape="') && /data-defense="ntml"[^>]*data-moved="false"/.test(svg));
  // every defense has its own shape (and the legend shows it)
  const shapes = [...svg.matchAll(/class="marker" data-defense="[^"]+" data-shape="([a-zA-Z]+)"/g)].map((m) => m[1]);
  assert.equal(new Set(shapes).size, 4);
  assert.equal(asrVsAccSvg(rows), svg, 'deterministic');
});

test('placeMarkers: many markers on one point all get their own place inside the bounds, the same each time', () => {
  const bounds = { x0: 0, y0: 0, x1: 100, y1: 100 };
  // a corner point: the rings are cut by the bounds
  const pts = Array.from({ length: 12 }, () => ({ x: 98, y: 2, r: 6 }));
  const spots = placeMarkers(pts, bounds);
  assert.deepEqual(spots[0], { x: 98, y: 2, moved: false }, 'the first stays on its point (half out of the area, as at ACC 100)');
  for (let i = 0; i < spots.length; i++) {
    if (i > 0) assert.ok(spots[i].x - 6 >= 0 && spots[i].x + 6 <= 100 && spots[i].y - 6 >= 0 && spots[i].y + 6 <= 100, `marker ${i} inside`);
    for (let j = i + 1; j < spots.length; j++) assert.ok(Math.hypot(spots[i].x - spots[j].x, spots[i].y - spots[j].y) >= 12, `${i} and ${j} apart`);
  }
  assert.deepEqual(placeMarkers(pts, bounds), spots);
});

test('the report is deterministic: the same records in any order give the same bytes', async () => {
  const records = [
    ...group('badnets', 'ntml', '100', 95, 1, 76),
    ...group('badnets', 'ft', '100', 85, 1, 78),
    ...group('badnets', 'ft', '5%', 88, 2, 77),
    ...group('sig', 'none', '100', 50, 0, 80),
  ];
  const write = async (rs: SweepCellRecord[]) => {
    const files: Record<string, string> = {};
    await renderSweepReport(rs, 'table', async (name, content) => void (files[name] = content), { cellIds: rs.map((r) => r.cellId) });
    return files;
  };
  const a = await write(records);
  const b = await write([...records].reverse());
  assert.deepEqual(Object.keys(a).sort(), ['asr_vs_acc.svg', 'der_by_defense.svg', 'report.csv', 'report.json', 'report.md']);
  for (const f of Object.keys(a)) assert.equal(b[f], a[f], f);
});
