/**
 * Defense variants across attacks: the screen's decision rule (issue 20: "the default becomes
 * the variant with the best mean DER over the six attacks; ties go to the lower cost") computed
 * from a sweep's rows, so a screen's choice is read off its report instead of worked out by hand.
 *
 * A variant is one defense label at one clean budget and model. Its mean DER is the mean of its
 * per-attack means (each attack weighs the same whatever its seed count). Only variants that
 * completed every attack the sweep has at that budget and model are ranked: a variant missing
 * its hardest attack would otherwise rank high for what it did not run. The others are listed
 * after, unranked, naming the attacks they miss.
 */
import { mdCell, naturalCompare, type SweepRow } from './sweepReport';

/** Mean DERs closer than this are a tie, decided by cost (the table prints one decimal). */
export const DER_TIE = 0.05;

export interface VariantSummary {
  defense: string;
  cleanBudget: string;
  model: string;
  /** attacks with at least one completed cell, in natural order */
  attacks: string[];
  /** attacks of the same budget and model that this variant has no completed cell for */
  missing: string[];
  /** fewest and most seeds behind one attack's mean */
  seeds: { min: number; max: number };
  /** mean over attacks of the per-attack mean DER */
  meanDer: number;
  /** the attack with the lowest mean DER */
  worst: { attack: string; der: number };
  /** mean over attacks of (undefended ACC - purified ACC), from the per-attack means; null when no row has both */
  meanAccDrop: number | null;
  /** mean over attacks of the per-cell compute seconds */
  meanComputeSeconds: number | null;
  /** 1-based rank among the complete variants of its budget and model; null when incomplete */
  rank: number | null;
}

const avg = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

/**
 * Every defense variant with a DER (not the undefended "none" rows), complete ones ranked within
 * their budget and model by mean DER, ties to the lower mean compute cost.
 */
export function rankVariants(rows: SweepRow[]): VariantSummary[] {
  const scored = rows.filter((r) => r.defenseName !== 'none' && r.n > 0 && r.der);
  const attacksOf = new Map<string, Set<string>>();
  const variants = new Map<string, SweepRow[]>();
  for (const r of scored) {
    const setting = JSON.stringify([r.cleanBudget, r.model]);
    if (!attacksOf.has(setting)) attacksOf.set(setting, new Set());
    attacksOf.get(setting)!.add(r.attack);
    const key = JSON.stringify([r.defense, r.cleanBudget, r.model]);
    variants.set(key, [...(variants.get(key) ?? []), r]);
  }
  const out: VariantSummary[] = [];
  for (const group of variants.values()) {
    const { defense, cleanBudget, model } = group[0];
    const attacks = group.map((r) => r.attack).sort(naturalCompare);
    const all = [...attacksOf.get(JSON.stringify([cleanBudget, model]))!].sort(naturalCompare);
    const ders = group.map((r) => ({ attack: r.attack, der: r.der!.mean }));
    const worst = ders.reduce((w, d) => (d.der < w.der || (d.der === w.der && naturalCompare(d.attack, w.attack) < 0) ? d : w));
    const drops = group.filter((r) => r.standardAcc && r.acc).map((r) => r.standardAcc!.mean - r.acc!.mean);
    const costs = group.filter((r) => r.computeSeconds).map((r) => r.computeSeconds!.mean);
    out.push({
      defense,
      cleanBudget,
      model,
      attacks,
      missing: all.filter((a) => !attacks.includes(a)),
      seeds: { min: Math.min(...group.map((r) => r.n)), max: Math.max(...group.map((r) => r.n)) },
      meanDer: avg(ders.map((d) => d.der)),
      worst,
      meanAccDrop: drops.length ? avg(drops) : null,
      meanComputeSeconds: costs.length ? avg(costs) : null,
      rank: null,
    });
  }
  const better = (a: VariantSummary, b: VariantSummary) =>
    Math.abs(a.meanDer - b.meanDer) >= DER_TIE ? b.meanDer - a.meanDer : (a.meanComputeSeconds ?? Infinity) - (b.meanComputeSeconds ?? Infinity) || naturalCompare(a.defense, b.defense);
  out.sort(
    (a, b) =>
      naturalCompare(a.cleanBudget, b.cleanBudget) ||
      naturalCompare(a.model, b.model) ||
      Number(a.missing.length > 0) - Number(b.missing.length > 0) ||
      (a.missing.length === 0 ? better(a, b) : naturalCompare(a.defense, b.defense)),
  );
  const ranks = new Map<string, number>();
  for (const v of out) {
    if (v.missing.length) continue;
    const setting = JSON.stringify([v.cleanBudget, v.model]);
    const rank = (ranks.get(setting) ?? 0) + 1;
    ranks.set(setting, rank);
    v.rank = rank;
  }
  return out;
}

const one = (v: number | null, digits = 1) => (v === null ? '–' : v.toFixed(digits));

/** The report's section: one row per variant, ranked ones first within each budget and model. */
export function variantsMarkdown(variants: VariantSummary[]): string[] {
  if (variants.length === 0) return [];
  const seeds = (v: VariantSummary) => (v.seeds.min === v.seeds.max ? `${v.seeds.min}` : `${v.seeds.min}-${v.seeds.max}`);
  return [
    '## Defense variants across attacks',
    '',
    'Each defense variant (label, clean budget, model) over the attacks it completed: mean DER = the mean of its ' +
      'per-attack mean DERs (every attack weighs the same), its lowest attack, the mean clean-accuracy drop from the ' +
      'undefended model, and the mean compute seconds per cell. Rank: by mean DER among the variants that completed every ' +
      `attack of this sweep at that budget and model; means within ${DER_TIE} are a tie, decided by the lower cost. ` +
      'Variants that miss an attack are listed after, unranked ("missing"). On dev seeds this is a screen\'s choice, not a result.',
    '',
    '| rank | defense | clean budget | model | attacks | seeds per attack | mean DER | lowest DER (attack) | mean ACC drop | compute s/cell |',
    '|---:|---|---|---|---:|---:|---:|---|---:|---:|',
    ...variants.map(
      (v) =>
        `| ${v.rank ?? `– (missing ${mdCell(v.missing.join(', '))})`} | ${mdCell(v.defense)} | ${mdCell(v.cleanBudget)} | ${mdCell(v.model)} | ${v.attacks.length} | ${seeds(v)} | ` +
        `${v.meanDer.toFixed(1)} | ${v.worst.der.toFixed(1)} (${v.worst.attack}) | ${one(v.meanAccDrop)} | ${one(v.meanComputeSeconds, 0)} |`,
    ),
  ];
}
