/**
 * The sweep report: one row per (attack, defense, clean budget, model), aggregating that group's
 * seeds as mean ± sample standard deviation (protocol: report mean ± std over >= 3 seeds), plus
 * the failed cells with their errors, the published BackdoorBench row beside each row (another
 * tier, labelled so), each stage's seconds, and a verdict paragraph generated from the numbers
 * (verdict.ts). Built from stored SweepCellRecords only, so it can be
 * (re)generated at any time from the store. Pure and deterministic: no clock, no I/O
 * (svgPlots.renderSweepReport writes the files).
 */
import { z } from 'zod';
import { canonicalJson } from '../data/codec';
import { baseAttackShape } from '../attacks/configs';
import type { SweepCellRecord } from './records';
import { REPORT_SEEDS_FROM, tableSeedRole, type SeedRole } from '../../schemas/seedRoles';
import { NOT_IN_REFERENCE, PUBLISHED_SOURCE, PUBLISHED_TIER, publishedRow, publishedText, type PublishedRow } from './published';
import { sweepVerdict } from './verdict';
import { rankVariants, variantsMarkdown, type VariantSummary } from './variantRanking';

/** Mean and sample std (n - 1) of the values present; std is null for a single value. */
export interface Stat {
  mean: number;
  std: number | null;
  /** how many cells had this value */
  n: number;
}

/** One completed cell's numbers, as used in its row. */
export interface SweepRowCell {
  cellId: string;
  seed: number;
  acc?: number;
  asr?: number;
  ra?: number;
  standardAcc?: number;
  standardAsr?: number;
  /** NT-ML's intermediate models (ntml.md diagnostics): the NT student before mutual learning, the teacher after it */
  ntStudentAcc?: number;
  ntStudentAsr?: number;
  teacherAcc?: number;
  teacherAsr?: number;
  /** split distillation: the training inputs it kept, in percent (0-100) */
  splitKeptPercent?: number;
  /** 100 when split's estimated target class was the attack's, 0 when not */
  splitTargetRight?: number;
  der?: number;
  /** sum of the seconds of stages that were not reused from the stage cache */
  computeSeconds: number;
  /** endedAt - startedAt of the cell's child workflow (absent when the record lacks the times) */
  wallSeconds?: number;
  /** each stage's seconds (a stage reused from the cache: its original run's), in the record's order */
  stageSeconds: Array<{ stage: string; seconds: number; cached: boolean }>;
}

/** One stage's cost in a row: mean ± std of its seconds over seeds, and in how many cells it came from the cache. */
export interface StageCost {
  stage: string;
  seconds: Stat;
  cached: number;
}

export interface SweepRow {
  attack: string;
  defense: string;
  /** the attack and defense names in the cells' configs (labels may carry settings): what published rows are matched by */
  attackName: string;
  defenseName: string;
  cleanBudget: string;
  model: string;
  /** completed cells (seeds) in the group */
  n: number;
  /** failed cells in the group (listed in SweepReport.failed) */
  failed: number;
  /** seeds of the completed cells, ascending */
  seeds: number[];
  /** purified (final) model */
  acc: Stat | null;
  asr: Stat | null;
  ra: Stat | null;
  /** undefended (standard training) model */
  standardAcc: Stat | null;
  standardAsr: Stat | null;
  /** NT-ML rows only (null for the baselines): see SweepRowCell */
  ntStudentAcc: Stat | null;
  ntStudentAsr: Stat | null;
  teacherAcc: Stat | null;
  teacherAsr: Stat | null;
  splitKeptPercent: Stat | null;
  /** share of seeds (0-100) whose split stage estimated the attack's target class */
  splitTargetRight: Stat | null;
  der: Stat | null;
  computeSeconds: Stat | null;
  wallSeconds: Stat | null;
  /** per stage, in the order the cells ran them */
  stageCosts: StageCost[];
  /** the published BackdoorBench row for the same attack and defense (another tier: PUBLISHED_TIER), null when the reference has none */
  published: PublishedRow | null;
  cells: SweepRowCell[];
}

export interface FailedCell {
  cellId: string;
  attack: string;
  defense: string;
  cleanBudget: string;
  model: string;
  seed: number;
  error: string;
  workflowId: string;
}

export interface SweepReport {
  rows: SweepRow[];
  failed: FailedCell[];
  verdict: string;
  markdown: string;
  csv: string;
  json: SweepReportJson;
}

export interface SweepReportJson {
  sweep: string;
  /** the role every seed of the table plays (protocol: dev for screens, report for published tables) */
  seedRole?: SeedRole;
  cells: { total: number; completed: number; failed: number };
  rows: SweepRow[];
  failed: FailedCell[];
  /** records left out because their cell ids are not the spec's (written under older cell ids) */
  superseded: number;
  /** where the rows' `published` numbers come from, and their tier */
  published: { source: string; tier: string };
  verdict: string;
  /** each defense variant over the attacks it completed, ranked by mean DER (variantRanking.ts) */
  variants: VariantSummary[];
  plots: string[];
}

export const SWEEP_REPORT_FILES = {
  markdown: 'report.md',
  csv: 'report.csv',
  json: 'report.json',
  asrVsAcc: 'asr_vs_acc.svg',
  derByDefense: 'der_by_defense.svg',
} as const;

const PLOTS = [SWEEP_REPORT_FILES.asrVsAcc, SWEEP_REPORT_FILES.derByDefense];

/** Natural order: digit runs compare as numbers ("5%" < "10%" < "100"), the rest by code unit. */
export function naturalCompare(a: string, b: string): number {
  const ta = a.match(/\d+|\D+/g) ?? [];
  const tb = b.match(/\d+|\D+/g) ?? [];
  for (let i = 0; i < Math.min(ta.length, tb.length); i++) {
    const x = ta[i];
    const y = tb[i];
    if (x === y) continue;
    const dx = /^\d/.test(x);
    const dy = /^\d/.test(y);
    if (dx && dy) {
      const d = Number(x) - Number(y);
      if (d !== 0) return d < 0 ? -1 : 1;
      if (x.length !== y.length) return x.length < y.length ? 1 : -1; // "007" after "7"
      continue;
    }
    return x < y ? -1 : 1;
  }
  if (ta.length !== tb.length) return ta.length < tb.length ? -1 : 1;
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Orders groups by attack, defense, clean budget, model. */
export function compareGroups(
  a: { attack: string; defense: string; cleanBudget: string; model: string },
  b: { attack: string; defense: string; cleanBudget: string; model: string },
): number {
  return (
    naturalCompare(a.attack, b.attack) ||
    naturalCompare(a.defense, b.defense) ||
    naturalCompare(a.cleanBudget, b.cleanBudget) ||
    naturalCompare(a.model, b.model)
  );
}

const finite = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);

/** Mean and sample standard deviation (n - 1 denominator) of the finite values; null when none. */
export function meanStd(values: Array<number | undefined | null>): Stat | null {
  const xs = values.filter(finite);
  if (xs.length === 0) return null;
  const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
  if (xs.length === 1) return { mean, std: null, n: 1 };
  const ss = xs.reduce((s, x) => s + (x - mean) * (x - mean), 0);
  return { mean, std: Math.sqrt(ss / (xs.length - 1)), n: xs.length };
}

/**
 * A row's key. The attack axis label is only the attack's name, so two grid entries of one attack
 * with other settings (wanet with and without its rotation) would share a row: the key holds the
 * attack's whole config, and attackVariantLabels names the rows apart.
 */
const groupKey = (r: SweepCellRecord) => JSON.stringify([r.axes.attack, attackSettings(r.config), r.axes.defense, r.axes.cleanBudget, r.axes.model]);

/** The attack's settings in a cell's config, name left out, as canonical JSON ('{}' when none). */
function attackSettings(config: SweepCellRecord['config'] | undefined): string {
  const a = config?.attack;
  if (!a || typeof a !== 'object') return '{}';
  const { name: _name, ...own } = a as Record<string, unknown>;
  return canonicalJson(own);
}

/**
 * Labels for rows whose attack label is shared by rows with other attack settings: the label plus
 * the settings that differ between them ("wanet(augment={"rotation":0})"); a row lacking every
 * differing setting keeps the plain label.
 */
function attackVariantLabels(groups: Array<{ axes: SweepCellRecord['axes']; config: SweepCellRecord['config'] }>): string[] {
  return groups.map((g) => {
    const twins = groups.filter((o) => o.axes.attack === g.axes.attack && attackSettings(o.config) !== attackSettings(g.config));
    if (twins.length === 0) return g.axes.attack;
    const own = JSON.parse(attackSettings(g.config)) as Record<string, unknown>;
    const others = twins.map((t) => JSON.parse(attackSettings(t.config)) as Record<string, unknown>);
    const differing = Object.keys(own)
      .filter((k) => others.some((o) => canonicalJson(o[k] ?? null) !== canonicalJson(own[k])))
      .sort();
    if (differing.length === 0) return g.axes.attack;
    const shown = differing.map((k) => `${k}=${typeof own[k] === 'object' ? canonicalJson(own[k]) : String(own[k])}`);
    return `${g.axes.attack}(${shown.join(',')})`;
  });
}

function cellNumbers(r: SweepCellRecord): SweepRowCell {
  const m = r.metrics;
  const stages = Array.isArray(r.stages) ? r.stages : [];
  const computeSeconds = stages.filter((s) => !s.cached && finite(s.seconds)).reduce((t, s) => t + s.seconds, 0);
  const stageSeconds = stages.filter((s) => s && typeof s.stage === 'string' && finite(s.seconds)).map((s) => ({ stage: s.stage, seconds: s.seconds, cached: !!s.cached }));
  const cell: SweepRowCell = { cellId: r.cellId, seed: r.axes.seed, computeSeconds, stageSeconds };
  if (finite(r.endedAt) && finite(r.startedAt)) cell.wallSeconds = Math.max(0, r.endedAt - r.startedAt) / 1000;
  const set = (k: Exclude<keyof SweepRowCell, 'cellId' | 'seed' | 'computeSeconds' | 'wallSeconds' | 'stageSeconds'>, v: unknown) => {
    if (finite(v)) cell[k] = v;
  };
  set('acc', m?.final?.acc);
  set('asr', m?.final?.asr);
  set('ra', m?.final?.ra);
  set('standardAcc', m?.standard?.acc);
  set('standardAsr', m?.standard?.asr);
  set('ntStudentAcc', m?.ntStudent?.acc);
  set('ntStudentAsr', m?.ntStudent?.asr);
  set('teacherAcc', m?.teacher?.acc);
  set('teacherAsr', m?.teacher?.asr);
  if (r.split && finite(r.split.keptFraction)) {
    set('splitKeptPercent', r.split.keptFraction * 100);
    const target = attackTarget(r.config);
    if (target !== undefined && finite(r.split.estimatedTarget)) set('splitTargetRight', r.split.estimatedTarget === target ? 100 : 0);
  }
  set('der', r.der);
  return cell;
}

const attackLabelFields = z.object(baseAttackShape).passthrough();

/** The target class of a cell's all-to-one attack, its default (attacks.md) applied; undefined for all-to-all or no attack. */
function attackTarget(config: Record<string, unknown>): number | undefined {
  const parsed = attackLabelFields.safeParse(config?.attack);
  return parsed.success && parsed.data.labelMap === 'allToOne' ? parsed.data.target : undefined;
}

/** Each stage's seconds over the cells, stages in the order of their first appearance (cells by seed). */
function stageCosts(cells: SweepRowCell[]): StageCost[] {
  const byStage = new Map<string, { seconds: number[]; cached: number }>();
  for (const c of cells)
    for (const s of c.stageSeconds) {
      let e = byStage.get(s.stage);
      if (!e) byStage.set(s.stage, (e = { seconds: [], cached: 0 }));
      e.seconds.push(s.seconds);
      if (s.cached) e.cached++;
    }
  return [...byStage].map(([stage, e]) => ({ stage, seconds: meanStd(e.seconds)!, cached: e.cached }));
}

/** The name in a cell's config (`attack.name`, `defense.name`), or the axis label when the record has no config field. */
function configName(config: Record<string, unknown> | undefined, field: 'attack' | 'defense', fallback: string): string {
  const name = (config?.[field] as { name?: unknown } | undefined)?.name;
  return typeof name === 'string' ? name : fallback;
}

/**
 * Aggregates cell records into the sweep report (rows, failed cells, Markdown, CSV, JSON).
 * `seedRole`: the role the table's seeds must play (the spec's); without it, the role the
 * cells' seeds agree on. Throws SeedRoleError for a table that mixes dev and report seeds,
 * or for dev-seed cells in a report-seed table.
 * `cellIds`: the spec's cell ids (its stored spec record); records under other ids are left out
 * and counted as superseded: a store that held a sweep's cells under older cell ids (before ids
 * hashed the data's content) has the same cells twice once the sweep reruns them.
 */
export function buildSweepReport(all: SweepCellRecord[], opts: { sweep: string; seedRole?: SeedRole; cellIds?: string[] }): SweepReport {
  const keep = opts.cellIds ? new Set(opts.cellIds) : undefined;
  const records = keep ? all.filter((r) => r && keep.has(r.cellId)) : all;
  const superseded = all.length - records.length;
  const seedRole = tableSeedRole(
    records.filter((r) => r && typeof r === 'object' && r.axes).map((r) => r.axes.seed),
    `sweep ${opts.sweep}`,
    opts.seedRole,
  );
  const groups = new Map<string, { axes: SweepCellRecord['axes']; config: SweepCellRecord['config']; done: SweepCellRecord[]; failed: SweepCellRecord[] }>();
  for (const r of records) {
    if (!r || typeof r !== 'object' || !r.axes) continue;
    const k = groupKey(r);
    let g = groups.get(k);
    if (!g) groups.set(k, (g = { axes: r.axes, config: r.config, done: [], failed: [] }));
    (r.status === 'completed' ? g.done : g.failed).push(r);
  }

  const bySeed = (a: { seed: number; cellId: string }, b: { seed: number; cellId: string }) =>
    a.seed - b.seed || (a.cellId < b.cellId ? -1 : a.cellId > b.cellId ? 1 : 0);

  const groupList = [...groups.values()];
  const attackLabels = attackVariantLabels(groupList);
  const labelOf = new Map([...groups.keys()].map((k, i) => [k, attackLabels[i]]));
  const rows: SweepRow[] = groupList
    .map(({ axes: recorded, config, done, failed }, i): SweepRow => {
      const axes = { ...recorded, attack: attackLabels[i] };
      const cells = done.map(cellNumbers).sort(bySeed);
      const pick = (k: keyof SweepRowCell) => meanStd(cells.map((c) => c[k] as number | undefined));
      const attackName = configName(config, 'attack', axes.attack);
      const defenseName = configName(config, 'defense', axes.defense);
      return {
        attack: axes.attack,
        defense: axes.defense,
        attackName,
        defenseName,
        cleanBudget: axes.cleanBudget,
        model: axes.model,
        n: cells.length,
        failed: failed.length,
        seeds: cells.map((c) => c.seed),
        acc: pick('acc'),
        asr: pick('asr'),
        ra: pick('ra'),
        standardAcc: pick('standardAcc'),
        standardAsr: pick('standardAsr'),
        ntStudentAcc: pick('ntStudentAcc'),
        ntStudentAsr: pick('ntStudentAsr'),
        teacherAcc: pick('teacherAcc'),
        teacherAsr: pick('teacherAsr'),
        splitKeptPercent: pick('splitKeptPercent'),
        splitTargetRight: pick('splitTargetRight'),
        der: pick('der'),
        computeSeconds: pick('computeSeconds'),
        wallSeconds: pick('wallSeconds'),
        stageCosts: stageCosts(cells),
        published: publishedRow(attackName, defenseName) ?? null,
        cells,
      };
    })
    .sort(compareGroups);

  const failed: FailedCell[] = records
    .filter((r) => r && r.axes && r.status !== 'completed')
    .map((r) => ({
      cellId: r.cellId,
      attack: labelOf.get(groupKey(r)) ?? r.axes.attack,
      defense: r.axes.defense,
      cleanBudget: r.axes.cleanBudget,
      model: r.axes.model,
      seed: r.axes.seed,
      error: r.error ?? `status ${JSON.stringify(r.status)} without an error message`,
      workflowId: r.workflowId,
    }))
    .sort((a, b) => compareGroups(a, b) || bySeed(a, b));

  const completed = rows.reduce((s, r) => s + r.n, 0);
  const verdict = sweepVerdict(rows);
  const variants = rankVariants(rows);
  const json: SweepReportJson = {
    sweep: opts.sweep,
    ...(seedRole ? { seedRole } : {}),
    cells: { total: completed + failed.length, completed, failed: failed.length },
    rows,
    failed,
    superseded,
    published: { source: PUBLISHED_SOURCE, tier: PUBLISHED_TIER },
    verdict,
    variants,
    plots: [...PLOTS],
  };
  return { rows, failed, verdict, markdown: sweepMarkdown(opts.sweep, rows, failed, seedRole, verdict, superseded, variants), csv: sweepCsv(opts.sweep, rows), json };
}

/** "mean ± std" with one decimal; "mean ± –" for a single seed; "–" when there is no value. */
export function formatStat(s: Stat | null): string {
  if (!s) return '–';
  return `${s.mean.toFixed(1)} ± ${s.std === null ? '–' : s.std.toFixed(1)}`;
}

/** "ACC / ASR" means with one decimal, "–" for a missing one. */
const accAsr = (acc: Stat | null, asr: Stat | null) => `${acc ? acc.mean.toFixed(1) : '–'} / ${asr ? asr.mean.toFixed(1) : '–'}`;

/** A markdown table cell: backslashes and pipes escaped, whitespace runs (newlines too) one space. */
export const mdCell = (s: string) => s.replace(/\\/g, '\\\\').replace(/\|/g, '\\|').replace(/\s+/g, ' ').trim();

const SEED_ROLE_LINES: Record<SeedRole, string> = {
  dev: `Seeds: dev seeds (below ${REPORT_SEEDS_FROM}). A screen or ablation: its numbers inform choices, so they are not published results.`,
  report: `Seeds: report seeds (${REPORT_SEEDS_FROM} and above). No setting was chosen on these seeds.`,
};

/** "standardTraining 100.0 ± 0.0 (2 of 3 from the cache)", one stage after the other. */
function stageCostText(r: SweepRow): string {
  if (r.stageCosts.length === 0) return '–';
  return r.stageCosts.map((c) => `${c.stage} ${formatStat(c.seconds)}${c.cached ? ` (${c.cached} of ${c.seconds.n} from the cache)` : ''}`).join(', ');
}

function sweepMarkdown(
  sweep: string,
  rows: SweepRow[],
  failed: FailedCell[],
  seedRole: SeedRole | undefined,
  verdict: string,
  superseded: number,
  variants: VariantSummary[],
): string {
  const completed = rows.reduce((s, r) => s + r.n, 0);
  const lines: string[] = [
    `# Sweep report: ${sweep}`,
    '',
    `${completed + failed.length} cells: ${completed} completed, ${failed.length} failed; ${rows.length} groups (attack × defense × clean budget × model).`,
    ...(superseded
      ? ['', `${superseded} stored cell record${superseded === 1 ? '' : 's'} under cell ids that are not the spec's (older ids, which hashed the data's path) left out: the sweep reran those cells under its current ids.`]
      : []),
    ...(seedRole ? ['', SEED_ROLE_LINES[seedRole]] : []),
    '',
    'How to read: each cell is mean ± sample std over seeds (n), all in %. ACC/ASR/RA are the purified model\'s; ' +
      '"undefended" is the backdoored model before purification. Lower ASR and unchanged ACC is better. ' +
      'DER 50 = no effect, 100 = ASR removed at no ACC cost. Cost is seconds per cell: compute = stages actually run ' +
      '(stages reused from the cache excluded), wall = the cell\'s workflow start to end. ' +
      `The last column (†) is the published ${PUBLISHED_SOURCE} row for the same attack and defense (ACC / ASR; DER), from a different tier.`,
    '',
    '| attack | defense | clean budget | model | n | ACC | ASR | RA | undefended ACC | undefended ASR | DER | compute s/cell | wall s/cell | published† ACC / ASR; DER |',
    '|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...rows.map(
      (r) =>
        `| ${[r.attack, r.defense, r.cleanBudget, r.model].map(mdCell).join(' | ')} | ${r.n}${r.failed ? ` (+${r.failed} failed)` : ''} | ` +
        [r.acc, r.asr, r.ra, r.standardAcc, r.standardAsr, r.der, r.computeSeconds, r.wallSeconds].map(formatStat).join(' | ') +
        ` | ${publishedText(r.published)} |`,
    ),
    '',
    `† Different tier: ${PUBLISHED_SOURCE}, ${PUBLISHED_TIER}, one row per attack and defense whatever this table's clean budget. ` +
      `It says what each defense does at full scale; it is not this table's numbers and not comparable number for number. "${NOT_IN_REFERENCE}": the reference has no such row.`,
  ];
  if (rows.some((r) => r.n > 0 && r.n < 3)) {
    lines.push('', 'Groups with fewer than 3 completed seeds are smoke tests, not results (protocol: mean ± std over ≥ 3 seeds).');
  }
  lines.push('', '## Verdict', '', verdict);
  const ranking = variantsMarkdown(variants);
  if (ranking.length) lines.push('', ...ranking);
  lines.push(
    '',
    '## Cost per stage',
    '',
    'Seconds per stage, mean ± std over the seeds. A stage reused from the stage cache counts with its original run\'s seconds ' +
      '(the cost of the result), so shared stages (data, standard training) show their cost in every row that uses them; ' +
      '"compute s/cell" above counts only the stages a cell ran itself.',
    '',
    '| attack | defense | clean budget | model | n | seconds per stage |',
    '|---|---|---|---|---:|---|',
    ...rows.filter((r) => r.n > 0).map((r) => `| ${[r.attack, r.defense, r.cleanBudget, r.model].map(mdCell).join(' | ')} | ${r.n} | ${mdCell(stageCostText(r))} |`),
  );
  const staged = rows.filter((r) => r.ntStudentAcc || r.teacherAcc);
  if (staged.length > 0) {
    lines.push(
      '',
      '## NT-ML stages',
      '',
      'Where NT-ML loses clean accuracy and where the backdoor goes (ACC / ASR, mean over seeds): the undefended model, ' +
        'the NT student (non-target label training, before mutual learning), the teacher after mutual learning, and the ' +
        'purified student. Split distillation: the share of training inputs kept and of seeds whose estimated target ' +
        'class was the attack\'s.',
      '',
      '| attack | defense | clean budget | model | n | undefended | NT student | teacher | purified | split kept % | target found % |',
      '|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|',
      ...staged.map(
        (r) =>
          `| ${[r.attack, r.defense, r.cleanBudget, r.model].map(mdCell).join(' | ')} | ${r.n} | ` +
          [
            accAsr(r.standardAcc, r.standardAsr),
            accAsr(r.ntStudentAcc, r.ntStudentAsr),
            accAsr(r.teacherAcc, r.teacherAsr),
            accAsr(r.acc, r.asr),
            r.splitKeptPercent ? r.splitKeptPercent.mean.toFixed(1) : '–',
            r.splitTargetRight ? r.splitTargetRight.mean.toFixed(0) : '–',
          ].join(' | ') +
          ' |',
      ),
    );
  }
  lines.push('', `## Failed cells (${failed.length})`, '');
  if (failed.length === 0) lines.push('None.');
  for (const f of failed) {
    const err = f.error.replace(/\s+/g, ' ').trim();
    lines.push(
      `- \`${f.cellId}\` ${f.attack} / ${f.defense} / budget ${f.cleanBudget} / ${f.model} / seed ${f.seed}: ${err.length > 500 ? `${err.slice(0, 500)}…` : err}`,
    );
  }
  lines.push(
    '',
    '## Plots',
    '',
    `- \`${SWEEP_REPORT_FILES.asrVsAcc}\`: ASR vs ACC per attack, one hollow marker shape per defense (±std bars) and the undefended model; a marker moved off a coincident point is joined to its true position by a thin line`,
    `- \`${SWEEP_REPORT_FILES.derByDefense}\`: mean DER per defense, grouped by attack (±std whiskers, 50 = no effect)`,
    '',
    `![ASR vs ACC](${SWEEP_REPORT_FILES.asrVsAcc})`,
    '',
    `![DER by defense](${SWEEP_REPORT_FILES.derByDefense})`,
  );
  return lines.join('\n') + '\n';
}

/** RFC 4180 field: quoted when it holds a comma, quote, CR or LF. */
function csvField(v: string | number): string {
  const s = String(v);
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

const csvNum = (v: number | null | undefined) => (v === null || v === undefined || !Number.isFinite(v) ? '' : String(Math.round(v * 1e4) / 1e4));

export const SWEEP_CSV_COLUMNS = [
  'sweep',
  'attack',
  'defense',
  'clean_budget',
  'model',
  'n',
  'failed',
  'seeds',
  'acc_mean',
  'acc_std',
  'asr_mean',
  'asr_std',
  'ra_mean',
  'ra_std',
  'standard_acc_mean',
  'standard_acc_std',
  'standard_asr_mean',
  'standard_asr_std',
  'der_mean',
  'der_std',
  'compute_seconds_mean',
  'compute_seconds_std',
  'wall_seconds_mean',
  'wall_seconds_std',
  'nt_student_acc_mean',
  'nt_student_asr_mean',
  'teacher_acc_mean',
  'teacher_asr_mean',
  'split_kept_percent_mean',
  'split_target_found_percent',
  // the published row beside this one: another tier (published.ts), empty when the reference has none
  'published_acc',
  'published_asr',
  'published_der',
] as const;

function sweepCsv(sweep: string, rows: SweepRow[]): string {
  const stats = (s: Stat | null) => [csvNum(s?.mean), csvNum(s?.std)];
  const lines = [SWEEP_CSV_COLUMNS.join(',')];
  for (const r of rows) {
    lines.push(
      [
        sweep,
        r.attack,
        r.defense,
        r.cleanBudget,
        r.model,
        r.n,
        r.failed,
        r.seeds.join(';'),
        ...stats(r.acc),
        ...stats(r.asr),
        ...stats(r.ra),
        ...stats(r.standardAcc),
        ...stats(r.standardAsr),
        ...stats(r.der),
        ...stats(r.computeSeconds),
        ...stats(r.wallSeconds),
        csvNum(r.ntStudentAcc?.mean),
        csvNum(r.ntStudentAsr?.mean),
        csvNum(r.teacherAcc?.mean),
        csvNum(r.teacherAsr?.mean),
        csvNum(r.splitKeptPercent?.mean),
        csvNum(r.splitTargetRight?.mean),
        csvNum(r.published?.acc),
        csvNum(r.published?.asr),
        csvNum(r.published?.der),
      ]
        .map(csvField)
        .join(','),
    );
  }
  return lines.join('\n') + '\n';
}
