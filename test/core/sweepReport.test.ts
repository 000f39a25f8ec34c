import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { buildSweepReport, meanStd, naturalCompare, SWEEP_CSV_COLUMNS, type SweepRow } from '../../core/report/sweepReport';
import { asrVsAccSvg, derByDefenseSvg, renderSweepReport } from '../../core/report/svgPlots';
import type { SweepCellRecord, StageTiming } from '../../core/report/records';

const close = (a: number | null | undefined, b: number, eps = 1e-9) => assert.ok(a !== null && a !== undefined && Math.abs(a - b) < eps, `${a} vs ${b}`);

let nextId = 0;
function cell(
  axes: Partial<SweepCellRecord['axes']>,
  m: { acc?: number; asr?: number; ra?: number; sAcc?: number; sAsr?: number; der?: number; stages?: StageTiming[]; wall?: number } = {},
  failed?: string,
): SweepCellRecord {
  const id = `c${String(nextId++).padStart(3, '0')}`;
  const full = { attack: 'badnets', defense: 'ntml', seed: 0, cleanBudget: '100', model: 'cnn', ...axes };
  const base = { sweep: 's1', cellId: id, axes: full, config: {}, workflowId: `wf-${id}`, startedAt: 1_000_000, endedAt: 1_000_000 + (m.wall ?? 10) * 1000 };
  if (failed !== undefined) return { ...base, status: 'failed', error: failed };
  return {
    ...base,
    status: 'completed',
    metrics: {
      standard: { acc: m.sAcc ?? 93, asr: m.sAsr ?? 95 },
      ntStudent: { acc: 80, asr: 5 },
      teacher: { acc: 85, asr: 4 },
      final: { acc: m.acc ?? 90, asr: m.asr, ra: m.ra },
    },
    der: m.der,
    stages: m.stages ?? [{ stage: 'ntTraining', seconds: 1 }],
  };
}

const COMMA_DEFENSE = 'ntml(splitDistillation=false,teacher=x)';

/** The hand-made sweep, in a scrambled order. */
function records(): SweepCellRecord[] {
  const a = [
    cell(
      { seed: 0 },
      {
        acc: 90, asr: 1, ra: 80, sAcc: 93, sAsr: 95, der: 96, wall: 200,
        stages: [{ stage: 'prepareData', seconds: 10, cached: true }, { stage: 'standardTraining', seconds: 100 }, { stage: 'ntTraining', seconds: 50 }],
      },
    ),
    cell(
      { seed: 1 },
      {
        acc: 92, asr: 2, ra: 85, sAcc: 93, sAsr: 96, der: 97, wall: 100,
        stages: [{ stage: 'prepareData', seconds: 10 }, { stage: 'standardTraining', seconds: 100, cached: true }, { stage: 'ntTraining', seconds: 60 }],
      },
    ),
    cell(
      { seed: 2 },
      {
        acc: 94, asr: 6, ra: 90, sAcc: 93, sAsr: 97, der: 98, wall: 60,
        stages: [{ stage: 'prepareData', seconds: 10, cached: true }, { stage: 'standardTraining', seconds: 100, cached: true }, { stage: 'ntTraining', seconds: 40 }],
      },
    ),
  ];
  const b = [
    cell({ defense: COMMA_DEFENSE, seed: 0 }, { acc: 88, asr: 10, ra: 70, der: 90 }),
    cell({ defense: COMMA_DEFENSE, seed: 1 }, { acc: 86, asr: 20, ra: 60, der: 84 }),
    cell({ defense: COMMA_DEFENSE, seed: 2 }, {}, 'worker ran out of memory\n  at tf.conv2d'),
  ];
  const c = [cell({ attack: 'blended', seed: 0 }, { acc: 91, asr: 3, ra: 75, sAcc: 92, sAsr: 99, der: 97.5 })];
  const d = [cell({ attack: 'wanet', seed: 0 }, {}, 'attack failed: grid out of range')];
  return [d[0], b[2], a[2], c[0], b[0], a[0], b[1], a[1]];
}

test('meanStd: sample std (n - 1), single value has no std, missing values skipped', () => {
  const s = meanStd([90, 92, 94])!;
  assert.equal(s.mean, 92);
  assert.equal(s.std, 2);
  assert.equal(s.n, 3);
  close(meanStd([1, 2, 6])!.std, Math.sqrt(7)); // deviations -2, -1, 3: 14 / 2
  assert.deepEqual(meanStd([5, undefined, null, NaN]), { mean: 5, std: null, n: 1 });
  assert.equal(meanStd([]), null);
});

test('rows: one per (attack, defense, budget, model), ordered, mean ± sample std over seeds checked by hand', () => {
  const rep = buildSweepReport(records(), { sweep: 's1' });
  assert.deepEqual(
    rep.rows.map((r) => [r.attack, r.defense, r.n, r.failed]),
    [
      ['badnets', 'ntml', 3, 0],
      ['badnets', COMMA_DEFENSE, 2, 1],
      ['blended', 'ntml', 1, 0],
      ['wanet', 'ntml', 0, 1],
    ],
  );
  const a = rep.rows[0];
  assert.deepEqual(a.seeds, [0, 1, 2]);
  assert.deepEqual(a.acc, { mean: 92, std: 2, n: 3 });
  close(a.asr!.mean, 3);
  close(a.asr!.std, Math.sqrt(7));
  assert.deepEqual(a.ra, { mean: 85, std: 5, n: 3 });
  assert.deepEqual(a.standardAcc, { mean: 93, std: 0, n: 3 });
  assert.deepEqual(a.standardAsr, { mean: 96, std: 1, n: 3 });
  assert.deepEqual(a.der, { mean: 97, std: 1, n: 3 });
  // cost: cached stages excluded -> 150, 70, 40 s; wall 200, 100, 60 s
  assert.deepEqual(a.cells.map((c) => c.computeSeconds), [150, 70, 40]);
  close(a.computeSeconds!.mean, 260 / 3);
  close(a.computeSeconds!.std, Math.sqrt(((150 - 260 / 3) ** 2 + (70 - 260 / 3) ** 2 + (40 - 260 / 3) ** 2) / 2));
  close(a.computeSeconds!.std, 56.8624, 1e-4);
  assert.equal(a.wallSeconds!.mean, 120);
  close(a.wallSeconds!.std, Math.sqrt(5200));

  const b = rep.rows[1];
  assert.deepEqual(b.acc, { mean: 87, std: Math.SQRT2, n: 2 });
  assert.deepEqual(b.der, { mean: 87, std: Math.sqrt(18), n: 2 });
  const c = rep.rows[2];
  assert.deepEqual(c.acc, { mean: 91, std: null, n: 1 });
  const d = rep.rows[3];
  assert.equal(d.acc, null);
  assert.equal(d.der, null);

  assert.deepEqual(
    rep.failed.map((f) => [f.attack, f.defense, f.seed, f.error]),
    [
      ['badnets', COMMA_DEFENSE, 2, 'worker ran out of memory\n  at tf.conv2d'],
      ['wanet', 'ntml', 0, 'attack failed: grid out of range'],
    ],
  );
  assert.deepEqual(rep.json.cells, { total: 8, completed: 6, failed: 2 });
  // deterministic: the input order does not matter
  const again = buildSweepReport([...records()].reverse(), { sweep: 's1' });
  assert.equal(again.markdown.replace(/c\d{3}/g, 'cX'), rep.markdown.replace(/c\d{3}/g, 'cX'));
  assert.equal(again.csv, rep.csv);
});

test('attack variants: grid entries of one attack with other settings get rows of their own, named by the settings that differ', () => {
  const withConfig = (r: SweepCellRecord, attack: Record<string, unknown>): SweepCellRecord => ({ ...r, config: { attack } });
  const plain = { name: 'wanet', mode: 'trainingControlled' };
  const noRotation = { name: 'wanet', mode: 'trainingControlled', augment: { rotation: 0 } };
  const recs = [
    withConfig(cell({ attack: 'wanet', defense: 'none', seed: 1 }, { asr: 46 }), plain),
    withConfig(cell({ attack: 'wanet', defense: 'none', seed: 2 }, { asr: 52 }), plain),
    withConfig(cell({ attack: 'wanet', defense: 'none', seed: 1 }, { asr: 73 }), noRotation),
    withConfig(cell({ attack: 'wanet', defense: 'none', seed: 2 }, { asr: 77 }), noRotation),
    withConfig(cell({ attack: 'wanet', defense: 'none', seed: 3 }, {}, 'killed'), noRotation),
    withConfig(cell({ attack: 'badnets', defense: 'none', seed: 1 }, { asr: 90 }), { name: 'badnets' }),
  ];
  const rep = buildSweepReport(recs, { sweep: 's1' });
  assert.deepEqual(
    rep.rows.map((r) => [r.attack, r.attackName, r.n, r.failed, r.asr?.mean]),
    [
      ['badnets', 'badnets', 1, 0, 90],
      ['wanet', 'wanet', 2, 0, 49],
      ['wanet(augment={"rotation":0})', 'wanet', 2, 1, 75],
    ],
  );
  assert.deepEqual(rep.failed.map((f) => f.attack), ['wanet(augment={"rotation":0})']);
  // one attack config per name: the label stays the name
  assert.deepEqual(buildSweepReport(recs.slice(0, 2), { sweep: 's1' }).rows.map((r) => r.attack), ['wanet']);
});

test('ordering: attack, defense, clean budget (natural order), model', () => {
  const recs = [
    cell({ cleanBudget: '100', model: 'b' }),
    cell({ cleanBudget: '5%', model: 'b' }),
    cell({ cleanBudget: '10', model: 'b' }),
    cell({ cleanBudget: '10', model: 'a' }),
    cell({ attack: 'adaptive', cleanBudget: '100' }),
  ];
  const rows = buildSweepReport(recs, { sweep: 'o' }).rows;
  assert.deepEqual(
    rows.map((r) => `${r.attack}/${r.cleanBudget}/${r.model}`),
    ['adaptive/100/cnn', 'badnets/5%/b', 'badnets/10/a', 'badnets/10/b', 'badnets/100/b'],
  );
  assert.ok(naturalCompare('seed2', 'seed10') < 0);
  assert.ok(naturalCompare('a', 'a') === 0);
});

test('markdown: title, how to read, mean ± std cells with 1 decimal, failed cells with errors, plot names', () => {
  const md = buildSweepReport(records(), { sweep: 's1' }).markdown;
  assert.match(md, /^# Sweep report: s1\n/);
  assert.match(md, /DER 50 = no effect, 100 = ASR removed at no ACC cost/);
  const rowA = md.split('\n').find((l) => l.startsWith('| badnets | ntml |'))!;
  assert.equal(rowA, '| badnets | ntml | 100 | cnn | 3 | 92.0 ± 2.0 | 3.0 ± 2.6 | 85.0 ± 5.0 | 93.0 ± 0.0 | 96.0 ± 1.0 | 97.0 ± 1.0 | 86.7 ± 56.9 | 120.0 ± 72.1 | not in our reference |');
  assert.match(md, /\| blended \| ntml \| 100 \| cnn \| 1 \| 91\.0 ± – \|/);
  assert.match(md, /\| wanet \| ntml \| 100 \| cnn \| 0 \(\+1 failed\) \| – \|/);
  assert.match(md, /## Failed cells \(2\)/);
  assert.match(md, /seed 2: worker ran out of memory at tf\.conv2d/);
  assert.match(md, /wanet \/ ntml \/ budget 100 \/ cnn \/ seed 0: attack failed: grid out of range/);
  assert.match(md, /fewer than 3 completed seeds/);
  assert.ok(md.includes('asr_vs_acc.svg') && md.includes('der_by_defense.svg'));
  // each table has a constant column count (no stray pipes from labels)
  const cols = (l: string) => l.replace(/\\\|/g, '').split('|').length;
  const tables = md.split('\n\n').map((block) => block.split('\n').filter((l) => l.startsWith('| '))).filter((t) => t.length > 0);
  assert.equal(tables.length, 4, 'the results table, the defense variants table, the cost per stage table and the NT-ML stages table');
  for (const table of tables) assert.ok(table.every((l) => cols(l) === cols(table[0])), table.join('\n'));
});

test('NT-ML stages: NT student and teacher per row, split kept share and target found, baselines left out', () => {
  const withSplit = (r: SweepCellRecord, attack: Record<string, unknown>, split?: { estimatedTarget: number; keptFraction: number }) => ({
    ...r,
    config: { attack },
    ...(split ? { split } : {}),
  });
  const baseline = cell({ defense: 'ft', seed: 0 }, { acc: 88, asr: 10 });
  delete baseline.metrics!.ntStudent;
  delete baseline.metrics!.teacher;
  const recs = [
    withSplit(cell({ seed: 0 }, { acc: 60, asr: 4 }), { name: 'badnets', target: 3 }, { estimatedTarget: 3, keptFraction: 0.8 }),
    withSplit(cell({ seed: 1 }, { acc: 62, asr: 6 }), { name: 'badnets', target: 3 }, { estimatedTarget: 0, keptFraction: 0.7 }),
    withSplit(cell({ attack: 'blended', seed: 0 }), { name: 'blended', labelMap: 'allToAll' }, { estimatedTarget: 2, keptFraction: 0.9 }),
    withSplit(cell({ attack: 'sig', seed: 0 }), { name: 'sig' }),
    withSplit(baseline, { name: 'badnets', target: 3 }),
  ];
  const rep = buildSweepReport(recs, { sweep: 'st' });
  const row = (attack: string, defense = 'ntml') => rep.rows.find((r) => r.attack === attack && r.defense === defense)!;
  const a = row('badnets');
  assert.deepEqual(a.ntStudentAcc, { mean: 80, std: 0, n: 2 });
  assert.deepEqual(a.teacherAsr, { mean: 4, std: 0, n: 2 });
  close(a.splitKeptPercent!.mean, 75);
  // both seeds attacked class 3: seed 0's split found it, seed 1's chose class 0
  assert.deepEqual(a.cells.map((c) => c.splitTargetRight), [100, 0]);
  assert.equal(a.splitTargetRight!.mean, 50);
  // all-to-all has no single target; a record without split has neither number
  assert.equal(row('blended').splitTargetRight, null);
  close(row('blended').splitKeptPercent!.mean, 90);
  assert.equal(row('sig').splitKeptPercent, null);
  const ft = row('badnets', 'ft');
  assert.equal(ft.ntStudentAcc, null);
  assert.equal(ft.teacherAcc, null);

  const md = rep.markdown;
  assert.match(md, /## NT-ML stages/);
  const stageLine = md.split('\n').find((l) => l.startsWith('| badnets | ntml | 100 | cnn | 2 | 93.0 / 95.0 |'));
  assert.equal(stageLine, '| badnets | ntml | 100 | cnn | 2 | 93.0 / 95.0 | 80.0 / 5.0 | 85.0 / 4.0 | 61.0 / 5.0 | 75.0 | 50 |');
  assert.ok(!md.split('## NT-ML stages')[1].split('## Failed')[0].includes('| ft |'), 'a baseline has no NT-ML stages row');

  const [header, ...lines] = parseCsv(rep.csv);
  const csvRow = lines.find((l) => l[header.indexOf('attack')] === 'badnets' && l[header.indexOf('defense')] === 'ntml')!;
  assert.equal(csvRow[header.indexOf('nt_student_acc_mean')], '80');
  assert.equal(csvRow[header.indexOf('split_kept_percent_mean')], '75');
  assert.equal(csvRow[header.indexOf('split_target_found_percent')], '50');
  const ftRow = lines.find((l) => l[header.indexOf('defense')] === 'ft')!;
  assert.equal(ftRow[header.indexOf('teacher_acc_mean')], '');
});

/** Minimal RFC 4180 parser for the checks. */
function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (quoted) {
      if (ch === '"' && text[i + 1] === '"') (field += '"'), i++;
      else if (ch === '"') quoted = false;
      else field += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ',') row.push(field), (field = '');
    else if (ch === '\n') row.push(field), rows.push(row), (row = []), (field = '');
    else field += ch;
  }
  if (field || row.length) row.push(field), rows.push(row);
  return rows;
}

test('CSV: one row per group, separate mean and std columns, quoted labels', () => {
  const csv = buildSweepReport(records(), { sweep: 's1' }).csv;
  const [header, ...rows] = parseCsv(csv);
  const columns: readonly string[] = SWEEP_CSV_COLUMNS;
  assert.deepEqual(header, [...columns]);
  assert.equal(rows.length, 4);
  assert.ok(rows.every((r) => r.length === header.length));
  const get = (r: string[], col: string) => r[header.indexOf(col)];
  const [a, b, c, d] = rows;
  assert.equal(get(a, 'acc_mean'), '92');
  assert.equal(get(a, 'acc_std'), '2');
  assert.equal(get(a, 'asr_std'), '2.6458');
  assert.equal(get(a, 'der_mean'), '97');
  assert.equal(get(a, 'compute_seconds_mean'), '86.6667');
  assert.equal(get(a, 'wall_seconds_mean'), '120');
  assert.equal(get(a, 'seeds'), '0;1;2');
  assert.equal(get(b, 'defense'), COMMA_DEFENSE);
  assert.equal(get(b, 'failed'), '1');
  assert.ok(csv.includes(`"${COMMA_DEFENSE}"`));
  assert.equal(get(c, 'acc_std'), '');
  assert.equal(get(d, 'n'), '0');
  assert.equal(get(d, 'acc_mean'), '');
});

/**
 * Well-formedness check: a regex tokenizer over tags; every open tag is closed in order,
 * attributes are quoted, and text holds no raw '<' or bare '&'.
 */
function assertWellFormedXml(xml: string): Map<string, number> {
  const counts = new Map<string, number>();
  const stack: string[] = [];
  const body = xml.replace(/^<\?xml[^?]*\?>\s*/, '');
  const tag = /<(\/?)([A-Za-z][\w:.-]*)((?:\s+[\w:.-]+="[^"<]*")*)\s*(\/?)>/g;
  let last = 0;
  let m: RegExpExecArray | null;
  while ((m = tag.exec(body))) {
    const between = body.slice(last, m.index);
    assert.ok(!between.includes('<') && !between.includes('>'), `malformed markup near ${JSON.stringify(body.slice(last, last + 80))}`);
    assert.ok(!/&(?!(amp|lt|gt|quot|#\d+);)/.test(between), `bare & in ${JSON.stringify(between)}`);
    const [, closing, name, , selfClosing] = m;
    if (closing) assert.equal(stack.pop(), name, `unbalanced </${name}>`);
    else {
      counts.set(name, (counts.get(name) ?? 0) + 1);
      if (!selfClosing) stack.push(name);
    }
    last = tag.lastIndex;
  }
  assert.equal(body.slice(last).trim(), '', 'trailing content');
  assert.deepEqual(stack, [], 'unclosed tags');
  assert.ok(body.startsWith('<svg'), 'root is <svg>');
  return counts;
}

const count = (s: string, re: RegExp) => (s.match(re) ?? []).length;

test('ASR vs ACC SVG: well-formed, one panel per attack, one marker per defense, undefended marker, axes and legend', () => {
  const rows = buildSweepReport(records(), { sweep: 's1' }).rows;
  const svg = asrVsAccSvg(rows, { title: 's1: ASR vs ACC' });
  assertWellFormedXml(svg);
  assert.equal(count(svg, /<g class="panel"/g), 3); // badnets, blended, wanet (no values)
  assert.equal(count(svg, /<path class="marker"/g), 3); // 2 defenses on badnets, 1 on blended
  assert.equal(count(svg, /<path class="undefended"/g), 2);
  assert.equal(count(svg, /class="legend-swatch"/g), 3); // 2 defenses + undefended
  assert.equal(count(svg, /ACC \(%\)/g), 3);
  assert.equal(count(svg, /ASR \(%\)/g), 3);
  assert.ok(svg.includes('>no ACC/ASR values<'));
  assert.ok(svg.includes('undefended (before purification)'));
  assert.ok(svg.includes('<title>s1: ASR vs ACC</title>'));
  // ticks 0..100 on both axes of every panel
  assert.equal(count(svg, /class="tick-label">100</g), 6);
  // badnets/ntml marker at ACC 92, ASR 3 in the first panel's 260 px plot area (left 58, top 36)
  assert.match(svg, /<g class="panel" data-attack="badnets" transform="translate\(16,44\)">/);
  const m = svg.match(/<path class="marker" data-defense="ntml" data-shape="[a-zA-Z]+" data-cx="([\d.]+)" data-cy="([\d.]+)"/)!;
  close(Number(m[1]), 58 + 0.92 * 260, 0.01);
  close(Number(m[2]), 36 + 260 - 0.03 * 260, 0.01);
  // error bars: 2 lines + 4 caps for each marker with std in both directions
  assert.ok(count(svg, /<line[^>]*stroke-width="1\.3"/g) >= 12);
});

test('DER SVG: well-formed, one bar per (attack, defense) with DER, whiskers for std, 50 reference line', () => {
  const rows = buildSweepReport(records(), { sweep: 's1' }).rows;
  const svg = derByDefenseSvg(rows);
  assertWellFormedXml(svg);
  assert.equal(count(svg, /<rect class="bar"/g), 3);
  assert.equal(count(svg, /<g class="whisker">/g), 2); // blended has one seed
  assert.equal(count(svg, /<g class="group"/g), 2); // wanet has no DER
  assert.equal(count(svg, /class="reference"/g), 1);
  assert.ok(svg.includes('50 = no effect'));
  assert.ok(svg.includes('DER (mean over seeds)'));
  assert.deepEqual([...svg.matchAll(/class="value-label">([^<]+)</g)].map((m) => m[1]), ['97.0', '87.0', '97.5']);
  // the bar height is proportional to the mean DER (280 px = 100)
  const h = Number(svg.match(/<rect class="bar" data-defense="ntml" x="[\d.]+" y="[\d.]+" width="30" height="([\d.]+)"/)![1]);
  close(h, 0.97 * 280, 0.01);
});

test('SVGs escape labels and survive empty input and budget/model variation', () => {
  const odd = [cell({ attack: 'a<b>&"c"', defense: "d'1" }, { acc: 50, asr: 50, der: 50 })];
  const rows = buildSweepReport(odd, { sweep: 'x' }).rows;
  for (const svg of [asrVsAccSvg(rows), derByDefenseSvg(rows), asrVsAccSvg([]), derByDefenseSvg([])]) assertWellFormedXml(svg);
  assert.ok(asrVsAccSvg([]).includes('No completed cells'));
  // two budgets: panels per (attack, budget)
  const two = buildSweepReport([cell({ cleanBudget: '100' }, { asr: 1 }), cell({ cleanBudget: '5%' }, { asr: 2 })], { sweep: 'y' }).rows;
  const svg = asrVsAccSvg(two);
  assert.equal(count(svg, /<g class="panel"/g), 2);
  assert.ok(svg.includes('badnets · budget 5%') && svg.includes('badnets · budget 100'));
});

test('renderSweepReport writes the five files, deterministically', async () => {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'ntml-sweep-report-'));
  try {
    const write = (sub: string) => async (name: string, content: string) => {
      await fsp.mkdir(path.join(dir, sub), { recursive: true });
      await fsp.writeFile(path.join(dir, sub, name), content);
    };
    const out = await renderSweepReport(records(), 's1', write('one'));
    assert.deepEqual(out.files, ['report.md', 'report.csv', 'report.json', 'asr_vs_acc.svg', 'der_by_defense.svg']);
    assert.deepEqual((await fsp.readdir(path.join(dir, 'one'))).sort(), [...out.files].sort());
    const json = JSON.parse(await fsp.readFile(path.join(dir, 'one', 'report.json'), 'utf8'));
    assert.equal(json.sweep, 's1');
    assert.equal(json.rows.length, 4);
    assert.equal(json.failed.length, 2);
    assert.deepEqual(json.rows[0].acc, { mean: 92, std: 2, n: 3 });
    await renderSweepReport(records().reverse(), 's1', write('two'));
    for (const f of out.files) {
      const norm = (s: string) => s.replace(/c\d{3}/g, 'cX');
      assert.equal(norm(await fsp.readFile(path.join(dir, 'two', f), 'utf8')), norm(await fsp.readFile(path.join(dir, 'one', f), 'utf8')), f);
    }
    const rows: SweepRow[] = out.rows;
    assert.equal(rows.length, 4);
  } finally {
    await fsp.rm(dir, { recursive: true, force: true });
  }
});

test('seed roles: the report names the role; it refuses a table mixing dev and report seeds, and dev-seed cells in a report table', () => {
  const dev = [cell({ seed: 1 }, { acc: 90, asr: 2 }), cell({ seed: 2 }, { acc: 91, asr: 3 })];
  const rep = [cell({ seed: 101 }, { acc: 90, asr: 2 }), cell({ seed: 102 }, { acc: 91, asr: 3 }), cell({ seed: 103 }, {}, 'boom')];
  const devReport = buildSweepReport(dev, { sweep: 'screen' });
  assert.equal(devReport.json.seedRole, 'dev');
  assert.match(devReport.markdown, /Seeds: dev seeds \(below 100\)/);
  const table = buildSweepReport(rep, { sweep: 'table', seedRole: 'report' });
  assert.equal(table.json.seedRole, 'report');
  assert.match(table.markdown, /Seeds: report seeds \(100 and above\)\. No setting was chosen on these seeds\./);
  // one dev-seed cell (even a failed one) among report seeds: refused, naming the sweep and the seeds
  assert.throws(
    () => buildSweepReport([...rep, cell({ seed: 3 }, {}, 'old run')], { sweep: 'table' }),
    (e: Error) => e.name === 'SeedRoleError' && /sweep table mixes dev seeds \(3\) and report seeds \(101, 102, 103\)/.test(e.message),
  );
  assert.throws(
    () => buildSweepReport(dev, { sweep: 'table', seedRole: 'report' }),
    (e: Error) => e.name === 'SeedRoleError' && /sweep table is a report-seed table but has dev-seed cells \(seeds 1, 2\)/.test(e.message),
  );
  assert.throws(() => buildSweepReport(rep, { sweep: 'screen', seedRole: 'dev' }), /is a dev-seed table but has report-seed cells \(seeds 101, 102, 103\)/);
  // an empty table takes the stated role
  assert.equal(buildSweepReport([], { sweep: 'table', seedRole: 'report' }).json.seedRole, 'report');
});
