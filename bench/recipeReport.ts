/** bench/recipeCompare's records and its markdown report (pure: no TensorFlow, no I/O). */
import type { TrainRecipe } from '../core/train/recipe';

export interface RunRecord {
  set: 'clean' | 'badnets';
  seed: number;
  recipe: string;
  framework: 'ntml' | 'pytorch';
  trainImages: number;
  poisoned: number;
  wallSeconds: number;
  /** os.loadavg() (1, 5, 15 minutes) just before and after the run */
  loadBefore: number[];
  loadAfter: number[];
  result: {
    acc: number;
    asr?: number;
    ra?: number;
    trainSeconds: number;
    history: Array<{ epoch: number; loss: number; learningRate: number; seconds: number }>;
    /** sha256 of the train.bin the run read (checked against the cell's) */
    trainSha256: string;
    threads?: number;
    torch?: string;
    tensorflow?: string;
  };
}

export interface RecipeReport {
  date: string;
  /** false while the comparison is still running or was stopped (rerun the command to continue) */
  finished: boolean;
  command: string;
  machine: { cpus: number; model: string; node: string; totalMemoryGiB: number };
  settings: { trainSubset: number; threads: number; recipes: Record<string, TrainRecipe> };
  runs: RunRecord[];
}

export interface Stat {
  n: number;
  mean: number;
  /** sample standard deviation (n - 1); 0 for one value */
  std: number;
}

export function stat(values: number[]): Stat {
  const n = values.length;
  const mean = values.reduce((a, b) => a + b, 0) / Math.max(1, n);
  const std = n > 1 ? Math.sqrt(values.reduce((a, b) => a + (b - mean) ** 2, 0) / (n - 1)) : 0;
  return { n, mean, std };
}

const fmt = (s: Stat | undefined) => (s && s.n ? `${s.mean.toFixed(2)} ± ${s.std.toFixed(2)} (n=${s.n})` : '-');

/** ACC and ASR per set, recipe and framework, and the per-seed ntml - PyTorch ACC gaps. */
export function summarise(runs: RunRecord[]) {
  const groups = new Map<string, RunRecord[]>();
  for (const r of runs) {
    const key = `${r.set}|${r.recipe}|${r.framework}`;
    groups.set(key, [...(groups.get(key) ?? []), r]);
  }
  const rows = [...groups.entries()].map(([key, rs]) => {
    const [set, recipe, framework] = key.split('|');
    const asr = rs.map((r) => r.result.asr).filter((x): x is number => x !== undefined);
    return {
      set,
      recipe,
      framework,
      acc: stat(rs.map((r) => r.result.acc)),
      asr: asr.length ? stat(asr) : undefined,
      trainSeconds: stat(rs.map((r) => r.result.trainSeconds)),
    };
  });
  const gaps: Array<{ set: string; recipe: string; gap: Stat }> = [];
  for (const set of new Set(runs.map((r) => r.set))) {
    for (const recipe of new Set(runs.map((r) => r.recipe))) {
      const diffs: number[] = [];
      for (const seed of new Set(runs.map((r) => r.seed))) {
        const find = (framework: string) => runs.find((r) => r.set === set && r.recipe === recipe && r.seed === seed && r.framework === framework);
        const [ours, theirs] = [find('ntml'), find('pytorch')];
        if (ours && theirs) diffs.push(ours.result.acc - theirs.result.acc);
      }
      if (diffs.length) gaps.push({ set, recipe, gap: stat(diffs) });
    }
  }
  return { rows, gaps };
}

function recipeLine(name: string, r: TrainRecipe): string {
  const schedule = r.schedule === 'oneCycle' ? `oneCycle (warm-up ${r.warmupFraction ?? 0.3} of the steps from peak/25)` : r.schedule;
  return (
    `- **${name}**: ${r.epochs} epoch${r.epochs === 1 ? '' : 's'}, batch ${r.batchSize}, SGD momentum ${r.momentum}${r.nesterov ? ' Nesterov' : ''}, ` +
    `peak lr ${r.learningRate}, ${schedule}, weight decay ${r.weightDecay} (coupled L2 on every parameter), ` +
    `augmentation: crop after ${r.augment.padding}-px zero padding${r.augment.flip ? ' + horizontal flip' : ''}`
  );
}

export function recipeMarkdown(report: RecipeReport): string {
  const { rows, gaps } = summarise(report.runs);
  const { settings: s, machine: m } = report;
  const out: string[] = [];
  out.push('# Standard model recipe: ntml vs PyTorch at the cpu tier (issue 19, item 6)', '');
  out.push(`${report.finished ? 'Finished' : '**Not finished** (rerun the command to continue)'} ${report.date}. Command:`, '');
  out.push('```', report.command, '```', '');
  out.push(
    `Machine: ${m.cpus} cores (${m.model}), ${m.totalMemoryGiB.toFixed(0)} GiB, Node ${m.node}; ${s.threads} threads on both sides, one run at a time. ` +
      `Both frameworks train smallCnn on the same exported records (sha256-checked), ${s.trainSubset}-image subset; ` +
      'see README.md for what is matched and what differs.',
    '',
  );
  out.push('Recipes:', '');
  for (const [name, r] of Object.entries(s.recipes)) out.push(recipeLine(name, r));
  out.push('', '## Clean accuracy and ASR (mean ± sample std over seeds)', '');
  out.push('| data | recipe | framework | clean ACC % | ASR % | training s |', '|---|---|---|---|---|---|');
  for (const r of rows.sort((a, b) => `${a.set}${a.recipe}${a.framework}`.localeCompare(`${b.set}${b.recipe}${b.framework}`))) {
    out.push(`| ${r.set} | ${r.recipe} | ${r.framework} | ${fmt(r.acc)} | ${fmt(r.asr)} | ${r.trainSeconds.mean.toFixed(0)} |`);
  }
  out.push('', '## ntml − PyTorch, clean ACC points (paired by seed)', '');
  out.push('| data | recipe | gap | within 1 point |', '|---|---|---|---|');
  for (const g of gaps) out.push(`| ${g.set} | ${g.recipe} | ${fmt(g.gap)} | ${Math.abs(g.gap.mean) <= 1 ? 'yes' : 'no'} |`);
  const badnets = rows.filter((r) => r.set === 'badnets' && r.framework === 'ntml');
  if (badnets.length) {
    out.push('', '## The issue\'s goals', '');
    for (const r of badnets) {
      out.push(`- ntml's BadNets f_std under **${r.recipe}**: clean ACC ${fmt(r.acc)}; goal ≥ 76: ${r.acc.mean >= 76 ? 'met' : 'not met'}.`);
    }
    const best = [...badnets].sort((a, b) => b.acc.mean - a.acc.mean)[0];
    out.push(`- Highest clean ACC of ntml's BadNets f_std: **${best.recipe}** (${best.acc.mean.toFixed(2)}).`);
  }
  out.push('', '## Runs', '');
  out.push('| data | seed | recipe | framework | ACC % | ASR % | RA % | final loss | training s | wall s | load 1-min before / after |', '|---|---|---|---|---|---|---|---|---|---|---|');
  for (const r of report.runs) {
    const last = r.result.history[r.result.history.length - 1];
    const opt = (x: number | undefined) => (x === undefined ? '-' : x.toFixed(2));
    out.push(
      `| ${r.set} | ${r.seed} | ${r.recipe} | ${r.framework} | ${r.result.acc.toFixed(2)} | ${opt(r.result.asr)} | ${opt(r.result.ra)} | ` +
        `${last ? last.loss.toFixed(3) : '-'} | ${r.result.trainSeconds.toFixed(0)} | ${r.wallSeconds.toFixed(0)} | ${r.loadBefore[0].toFixed(2)} / ${r.loadAfter[0].toFixed(2)} |`,
    );
  }
  const versions = [...new Set(report.runs.map((r) => (r.result.torch ? `PyTorch ${r.result.torch}` : undefined) ?? (r.result.tensorflow ? `TensorFlow ${r.result.tensorflow}` : undefined)).filter(Boolean))];
  if (versions.length) out.push('', `Libraries: ${versions.join(', ')}.`);
  return `${out.join('\n')}\n`;
}
