/**
 * The sweep report's verdict: one paragraph comparing NT-ML at |D_c| = 100 with each baseline at
 * each of its budgets (the table's question), generated from the rows alone.
 *
 * With 3 seeds a difference of means says little, so the wording is graded and never stronger
 * than the numbers: "higher on mean" when the ±1 std intervals overlap; "higher, intervals apart"
 * only when the gap exceeds both stds (NT-ML's mean - std above the baseline's mean + std); a
 * group with a single seed has no std and is never called apart. No "better", "outperforms" or
 * "significant": none of these is a test.
 */
import { naturalCompare, type Stat, type SweepRow } from './sweepReport';

/** NT-ML's budget in the table's headline comparison (protocol: |D_c| = 100 for NT-ML). */
export const VERDICT_CLEAN_BUDGET = '100';

export interface Comparison {
  attack: string;
  derDiff: number;
  accDiff: number;
  /** 'higher'/'lower': the ±1 std intervals are apart; 'overlap': they overlap or a std is missing */
  separation: 'higher' | 'lower' | 'overlap';
}

const signed = (v: number) => `${v >= 0 ? '+' : '−'}${Math.abs(v).toFixed(1)}`;
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

function separation(a: Stat, b: Stat): Comparison['separation'] {
  if (a.std === null || b.std === null) return 'overlap';
  if (a.mean - a.std > b.mean + b.std) return 'higher';
  if (a.mean + a.std < b.mean - b.std) return 'lower';
  return 'overlap';
}

/** NT-ML's rows against one baseline's rows at one budget, attack by attack (same attack and model). */
export function compareRows(ntml: SweepRow[], baseline: SweepRow[]): Comparison[] {
  const out: Comparison[] = [];
  for (const n of ntml) {
    const b = baseline.find((r) => r.attack === n.attack && r.model === n.model);
    if (!b || !n.der || !b.der || !n.acc || !b.acc) continue;
    out.push({ attack: n.attack, derDiff: n.der.mean - b.der.mean, accDiff: n.acc.mean - b.acc.mean, separation: separation(n.der, b.der) });
  }
  return out.sort((x, y) => naturalCompare(x.attack, y.attack));
}

const list = (xs: string[]) => (xs.length <= 1 ? xs.join('') : `${xs.slice(0, -1).join(', ')} and ${xs[xs.length - 1]}`);

/** One sentence: NT-ML (`who`: how the paragraph names it) against one baseline at one budget. */
export function comparisonSentence(baseline: string, budget: string, cs: Comparison[], who = 'NT-ML'): string {
  const k = cs.length;
  const higher = cs.filter((c) => c.derDiff > 0);
  const lower = cs.filter((c) => c.derDiff < 0);
  const apartHigher = cs.filter((c) => c.separation === 'higher').map((c) => c.attack);
  const apartLower = cs.filter((c) => c.separation === 'lower').map((c) => c.attack);
  const head = `Against ${baseline} at |D_c| = ${budget}`;
  let der: string;
  const all = k === 1 ? 'on the one attack, with the ±1 std intervals apart' : `on every one of the ${k} attacks, with the ±1 std intervals apart on each`;
  if (apartHigher.length === k) der = `${who}'s DER is higher ${all}`;
  else if (apartLower.length === k) der = `${who}'s DER is lower ${all}`;
  else {
    const parts = [`${who}'s DER is higher on mean for ${higher.length} of ${k} attack${k === 1 ? '' : 's'}`];
    if (lower.length) parts.push(`lower for ${lower.length}`);
    const ties = k - higher.length - lower.length;
    if (ties) parts.push(`equal for ${ties}`);
    der = parts.join(', ');
    const apart: string[] = [];
    if (apartHigher.length) apart.push(`higher with the ±1 std intervals apart only for ${list(apartHigher)}`);
    if (apartLower.length) apart.push(`lower with the intervals apart for ${list(apartLower)}`);
    der += apart.length ? ` (${apart.join('; ')}; the intervals overlap for the rest)` : ' (the ±1 std intervals overlap for every attack)';
  }
  const d = mean(cs.map((c) => c.derDiff));
  const accs = cs.map((c) => c.accDiff);
  const a = mean(accs);
  const spread = k > 1 ? ` (per attack ${signed(Math.min(...accs))} to ${signed(Math.max(...accs))})` : '';
  const acc = Math.abs(a) < 0.05 ? `the same on average${spread}` : `${Math.abs(a).toFixed(1)} points ${a < 0 ? 'lower' : 'higher'} on average${spread}`;
  return `${head} (${k} attack${k === 1 ? '' : 's'}), ${der}; the mean DER difference is ${signed(d)} points, and ${who}'s clean accuracy is ${acc}.`;
}

/**
 * The verdict paragraph: NT-ML at |D_c| = 100 (each NT-ML row label) against every baseline
 * (not "none", not NT-ML) at each budget it ran with, in a fixed order.
 */
export function sweepVerdict(rows: SweepRow[]): string {
  const ntmlLabels = [...new Set(rows.filter((r) => r.defenseName === 'ntml' && r.cleanBudget === VERDICT_CLEAN_BUDGET && r.n > 0).map((r) => r.defense))].sort(naturalCompare);
  if (ntmlLabels.length === 0) return `No completed NT-ML cells at |D_c| = ${VERDICT_CLEAN_BUDGET}: no verdict.`;
  const baselines = rows.filter((r) => r.defenseName !== 'ntml' && r.defenseName !== 'none' && r.n > 0);
  const pairs = [...new Map(baselines.map((r) => [JSON.stringify([r.defense, r.cleanBudget]), [r.defense, r.cleanBudget] as const])).values()].sort(
    // each baseline at NT-ML's own budget first, then at its others (5%: the baselines' default)
    (x, y) => naturalCompare(x[0], y[0]) || Number(y[1] === VERDICT_CLEAN_BUDGET) - Number(x[1] === VERDICT_CLEAN_BUDGET) || naturalCompare(x[1], y[1]),
  );
  const seeds = [...new Set(rows.filter((r) => r.n > 0).map((r) => r.n))].sort((a, b) => a - b);
  const out: string[] = [
    `Verdict, from the means over ${seeds.length === 1 ? seeds[0] : `${seeds[0]}-${seeds[seeds.length - 1]}`} seed${seeds.length === 1 && seeds[0] === 1 ? '' : 's'} per group: ` +
      '"higher on mean" where the ±1 std intervals overlap, "intervals apart" where the gap exceeds both stds; with so few seeds neither is a significance test.',
  ];
  for (const label of ntmlLabels) {
    const ntml = rows.filter((r) => r.defense === label && r.cleanBudget === VERDICT_CLEAN_BUDGET && r.n > 0);
    const who = ntmlLabels.length > 1 || label !== 'ntml' ? `NT-ML as ${label}` : 'NT-ML';
    const sentences = pairs
      .map(([defense, budget]) => {
        const cs = compareRows(ntml, baselines.filter((r) => r.defense === defense && r.cleanBudget === budget));
        return cs.length ? comparisonSentence(defense, budget, cs, who) : '';
      })
      .filter(Boolean);
    if (ntmlLabels.length > 1) out.push(`${who} at |D_c| = ${VERDICT_CLEAN_BUDGET}:`);
    out.push(...(sentences.length ? sentences : [`No baseline shares an attack with ${who}'s completed cells: nothing to compare.`]));
    const costs = ntml.filter((r) => r.standardAcc && r.acc).map((r) => r.standardAcc!.mean - r.acc!.mean);
    if (costs.length) {
      const c = mean(costs);
      const over = `on average over ${costs.length} attack${costs.length === 1 ? '' : 's'}`;
      out.push(c >= 0 ? `${who}'s own clean-accuracy cost against the undefended model is ${c.toFixed(1)} points ${over}.` : `${who}'s clean accuracy is ${(-c).toFixed(1)} points above the undefended model's ${over}.`);
    }
  }
  return out.join(' ');
}
