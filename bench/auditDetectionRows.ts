/**
 * One row of the audit-detection table per audited model (bench/auditDetection.ts), and the
 * table itself. Pure: the rows are read off the audit's own report (verdict, probes, Neural
 * Cleanse, accuracy, integrity), never recomputed, and say what each check could have seen.
 */
import type { AuditReport } from '../core/audit/report';
import type { Verdict } from '../core/audit/verdict';
import type { StripResult } from '../core/audit/strip';

/** backdoored: the f_std of an attack cell; clean: a model trained the same way without poisoning. */
export type ModelRole = 'backdoored' | 'clean';

/**
 * What Neural Cleanse can be expected to find, by trigger type. NC searches for the smallest
 * mask that sends every image to one class: it assumes a small, fixed, patch-like trigger.
 * Warping (WaNet), input-specific (Input-Aware) and full-image triggers (Blended, SIG,
 * Narcissus) have no small mask, which is why the literature reports them as NC's misses
 * (docs/audits.md, "Coverage").
 */
export const NC_SCOPE: Record<string, { trigger: string; inScope: boolean }> = {
  badnets: { trigger: 'small patch', inScope: true },
  blended: { trigger: 'full-image blend', inScope: false },
  sig: { trigger: 'full-image signal', inScope: false },
  wanet: { trigger: 'warping', inScope: false },
  inputaware: { trigger: 'input-specific', inScope: false },
  narcissus: { trigger: 'full-image, optimised', inScope: false },
};

/**
 * Whether a known-trigger probe replays the very trigger the model was trained with: only
 * when the attack ran with the library's default trigger and no run-dependent part. A probe
 * hit then shows the audit knew the trigger, not that it found an unknown one.
 */
export const PROBE_SCOPE: Record<string, string> = {
  badnets: 'same trigger (default patch)',
  blended: 'same trigger (default pattern seed 0)',
  sig: 'same trigger (default signal)',
  wanet: "another grid (the probe's attack seed is a run with seed 0's)",
  inputaware: 'none (learned trigger: skipped)',
  narcissus: 'none (learned trigger: skipped)',
};

/** Where a row's model comes from: its sweep cell, attack, seed and artifact. */
export interface RowSource {
  sweep: string;
  cellId: string;
  role: ModelRole;
  attack: string;
  /** the attack's settings that differ from the library's defaults, target aside ("rate=0.01"): rows of one attack at other settings are counted apart */
  settings?: string;
  seed: number;
  /** the attack's all-to-one target; undefined for a clean model or an all-to-all attack */
  trueTarget?: number;
  /** the audited f_std (its store artifact) */
  model: { uri: string; sha256: string };
}

/** One audited model: where it came from (its RowSource) and what the audit found. */
export interface DetectionRow extends RowSource {
  /** sweep/cellId: the resume key */
  key: string;
  auditId: string;
  verdict: Verdict;
  reasons: string[];
  /** the class the audit names first (suspectClasses[0]) */
  flaggedClass?: number;
  flaggedIsTarget?: boolean;
  probe: {
    fired: boolean;
    /** every probe that reached the threshold, as "attack -> class (ASR %)" */
    hits: Array<{ attack: string; towardsClass: number; asr: number }>;
    /** the strongest probe, fired or not */
    highest?: { attack: string; towardsClass: number; asr: number };
    threshold: number;
    knowsTrigger: string;
  };
  neuralCleanse?: {
    flagged: number[];
    candidate?: number;
    candidateL1?: number;
    /** the candidate's MAD anomaly index (flagged above the policy's threshold) */
    candidateIndex?: number;
    medianL1: number;
    /** NC names the true target (flags it or it is the candidate) */
    pointsAtTarget?: boolean;
    seconds: number;
    scope: string;
  };
  accuracy: { current: number; fired: boolean; minimum?: number };
  integrity: string;
  /** wall time of the audit workflow, start to result */
  seconds: number;
  /**
   * STRIP, measured beside the audit (not one of its checks): of the cell's triggered test
   * images, how many an input-level detector flags at its false-rejection rate on clean ones;
   * one result per superimposition (blend); seconds are cumulative
   */
  strip?: Array<StripResult & { seconds: number }>;
}

export function detectionRow(source: RowSource, report: AuditReport, seconds: number): DetectionRow {
  const threshold = report.probes.asrThreshold;
  const hits: DetectionRow['probe']['hits'] = [];
  let highest: DetectionRow['probe']['highest'];
  for (const p of report.probes.probes) {
    if (p.status !== 'probed' || !p.asrByClass) continue;
    p.asrByClass.forEach((asr, c) => {
      if (asr >= threshold) hits.push({ attack: p.attack, towardsClass: c, asr });
    });
    if (p.worstClass !== undefined && p.worstAsr !== undefined && (!highest || p.worstAsr > highest.asr)) {
      highest = { attack: p.attack, towardsClass: p.worstClass, asr: p.worstAsr };
    }
  }
  const nc = report.neuralCleanse;
  const target = source.trueTarget;
  const ncPoints = (c: number) => nc !== undefined && (nc.flagged.includes(c) || nc.smallestClass === c);
  const flaggedClass = report.verdict.verdict === 'clean' ? undefined : report.verdict.suspectClasses[0];
  const minimum = report.policy.accuracy.minimum;
  const scope = NC_SCOPE[source.attack];
  const candidate = nc?.classes.find((c) => c.targetClass === nc.smallestClass);
  return {
    key: `${source.sweep}/${source.cellId}`,
    ...source,
    auditId: report.auditId,
    verdict: report.verdict.verdict,
    reasons: report.verdict.reasons,
    flaggedClass,
    flaggedIsTarget: target === undefined || flaggedClass === undefined ? undefined : flaggedClass === target,
    probe: { fired: hits.length > 0, hits, highest, threshold, knowsTrigger: PROBE_SCOPE[source.attack] ?? 'n/a (no attack)' },
    neuralCleanse: nc && {
      flagged: nc.flagged,
      candidate: nc.smallestClass,
      candidateL1: candidate?.maskL1,
      candidateIndex: candidate?.anomalyIndex,
      medianL1: nc.median,
      pointsAtTarget: target === undefined ? undefined : ncPoints(target),
      seconds: nc.seconds,
      scope: scope ? `${scope.trigger}: ${scope.inScope ? 'in scope' : 'known miss'}` : 'n/a (no attack)',
    },
    accuracy: { current: report.accuracy.current, fired: minimum !== undefined && report.accuracy.current < minimum, minimum },
    integrity: report.integrity.status,
    seconds,
  };
}

/** Flagged: any verdict but clean (backdoored or suspicious; changed cannot occur on a first audit). */
export const isFlagged = (r: Pick<DetectionRow, 'verdict'>) => r.verdict !== 'clean';

export interface DetectionRun {
  command: string;
  machine: Record<string, unknown>;
  /** 1/5/15-minute load averages when the run started and ended */
  loadAverage: { start: number[]; end: number[] };
  startedAt: string;
  finishedAt: string;
  sweeps: { backdoored: string; clean?: string };
  referenceSet: { size: number; seed: number; from: string };
  policy: unknown;
  /** cells of the sweeps that had not completed (failed or still running), so not audited */
  unfinishedCells?: string[];
}

export interface DetectionReport {
  runs: DetectionRun[];
  rows: DetectionRow[];
}

const pct = (v: number) => `${v.toFixed(1)} %`;

function ncCell(r: DetectionRow): string {
  const nc = r.neuralCleanse;
  if (!nc) return 'disabled';
  const flagged = nc.flagged.length ? `flags ${nc.flagged.join(', ')}` : 'flags none';
  const candidate =
    nc.candidate === undefined
      ? 'no working trigger'
      : `smallest ${nc.candidate} (L1 ${nc.candidateL1?.toFixed(1)}, median ${nc.medianL1.toFixed(1)}${nc.candidateIndex === undefined ? '' : `, index ${nc.candidateIndex.toFixed(2)}`})`;
  return `${flagged}; ${candidate}`;
}

function probeCell(r: DetectionRow): string {
  if (r.probe.fired) {
    return r.probe.hits.map((h) => `**${h.attack} → ${h.towardsClass} (${pct(h.asr)})**`).join(', ');
  }
  const h = r.probe.highest;
  return h ? `none (highest ${h.attack} → ${h.towardsClass}, ${pct(h.asr)})` : 'none probed';
}

function stripCell(r: DetectionRow): string {
  // rows of a harness before the blends were compared hold one result
  const results = r.strip === undefined ? [] : Array.isArray(r.strip) ? r.strip : [r.strip as StripResult];
  if (!results.length) return '-';
  return results.map((s) => `${s.blend ?? 'average'}: ${s.flagged}/${s.inputs} flagged (clean ${s.cleanFlagged}/${s.cleanInputs})`).join('; ');
}

/** The attack as rows are grouped and shown: its name, with its non-default settings. */
export const attackLabel = (r: Pick<RowSource, 'attack' | 'settings'>) => (r.settings ? `${r.attack}(${r.settings})` : r.attack);

/** The summary lines: the issue's two goals, counted. */
export function goals(rows: DetectionRow[]): string[] {
  const backdoored = rows.filter((r) => r.role === 'backdoored');
  const clean = rows.filter((r) => r.role === 'clean');
  const attacks = [...new Set(backdoored.map(attackLabel))];
  const lines = attacks.map((label) => {
    const own = backdoored.filter((r) => attackLabel(r) === label);
    const a = own[0].attack;
    const flagged = own.filter(isFlagged);
    const onTarget = flagged.filter((r) => r.flaggedIsTarget);
    const ncOnTarget = own.filter((r) => r.neuralCleanse?.pointsAtTarget).length;
    const scope = NC_SCOPE[a] ? `${NC_SCOPE[a].trigger}: ${NC_SCOPE[a].inScope ? 'in scope' : 'a known miss in the literature'}` : 'trigger type unknown';
    const strip = own.flatMap((r) => (Array.isArray(r.strip) ? r.strip : []));
    const blends = [...new Set(strip.map((s) => s.blend))];
    const stripText = blends.length
      ? `; STRIP (beside the audit) flagged ${blends
          .map((b) => {
            const of = strip.filter((s) => s.blend === b);
            return `${of.reduce((n, s) => n + s.flagged, 0)} of ${of.reduce((n, s) => n + s.inputs, 0)} triggered inputs (${b})`;
          })
          .join(', ')}`
      : '';
    return `- ${label}: ${flagged.length} of ${own.length} flagged (${onTarget.length} naming the true target); Neural Cleanse (${scope}) named the target in ${ncOnTarget} of ${own.length}${stripText}`;
  });
  const everyAttack = attacks.length > 0 && backdoored.every(isFlagged);
  lines.unshift(
    `- every attack flagged: ${everyAttack ? 'yes' : 'no'} (${backdoored.filter(isFlagged).length} of ${backdoored.length} backdoored models)`,
    `- no clean model flagged: ${clean.some(isFlagged) ? 'no' : 'yes'} (${clean.filter(isFlagged).length} of ${clean.length} clean models flagged)`,
  );
  return lines;
}

export function detectionMarkdown(report: DetectionReport): string {
  const rows = [...report.rows].sort((a, b) => a.role.localeCompare(b.role) || attackLabel(a).localeCompare(attackLabel(b)) || a.seed - b.seed);
  const out = ['# Audit detection: backdoored and clean models', '', ...goals(rows), ''];
  out.push(
    '| model | seed | target | verdict | flagged class | known-trigger probe | probe knows the trigger | Neural Cleanse | NC names target | NC scope (literature) | accuracy | integrity | seconds | STRIP (beside the audit), 5 % FRR |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|',
  );
  for (const r of rows) {
    const ncTarget = r.neuralCleanse?.pointsAtTarget === undefined ? '-' : r.neuralCleanse.pointsAtTarget ? 'yes' : 'no';
    const flagged = r.flaggedClass === undefined ? '-' : `${r.flaggedClass}${r.flaggedIsTarget === undefined ? '' : r.flaggedIsTarget ? ' (= target)' : ' (≠ target)'}`;
    out.push(
      `| ${r.role === 'clean' ? 'clean' : attackLabel(r)} | ${r.seed} | ${r.trueTarget ?? '-'} | ${r.verdict} | ${flagged} | ${probeCell(r)} | ${r.probe.knowsTrigger} | ${ncCell(r)} | ${ncTarget} | ${r.neuralCleanse?.scope ?? '-'} | ${pct(r.accuracy.current)}${r.accuracy.fired ? ' (below minimum)' : ''} | ${r.integrity} | ${r.seconds.toFixed(0)} | ${stripCell(r)} |`,
    );
  }
  out.push('', '## Runs', '');
  for (const run of report.runs) {
    const load = (l: number[]) => l.map((v) => v.toFixed(2)).join(' / ');
    out.push(
      `- \`${run.command}\``,
      `  - ${run.startedAt} to ${run.finishedAt}; load average (1/5/15 min) ${load(run.loadAverage.start)} at the start, ${load(run.loadAverage.end)} at the end`,
      `  - sweeps: backdoored ${run.sweeps.backdoored}${run.sweeps.clean ? `, clean ${run.sweeps.clean}` : ''}; reference set: ${run.referenceSet.size} images of ${run.referenceSet.from} (class-stratified, seed ${run.referenceSet.seed})`,
      `  - machine: ${Object.entries(run.machine).map(([k, v]) => `${k} ${v}`).join(', ')}`,
      `  - policy: \`${JSON.stringify(run.policy)}\``,
      ...(run.unfinishedCells?.length ? [`  - not audited, the cell had not completed: ${run.unfinishedCells.join(', ')}`] : []),
    );
  }
  out.push(
    '',
    "STRIP is not one of the audit's checks: it judges inputs, and an audit has none that may carry a trigger. It is measured here, on each cell's " +
      'triggered test images, to show what an input-level detector would add (docs/audits.md, "Coverage"); its threshold is set on half of the ' +
      'reference set, the other half are the overlays, 16 per input; `average` is the 50/50 blend, `sum` STRIP\'s saturated sum (core/audit/strip.ts).',
  );
  out.push('', 'Each row is one `audit` workflow (the code path of `ntml audit run`); its report and trigger images are in the store under the audit id (report.json: `auditId`).', '');
  return out.join('\n');
}
