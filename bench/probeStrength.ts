/**
 * How the audit's known-trigger probes respond to the trigger's strength, on a sweep's
 * backdoored models and on clean ones (issue 25: the SIG probe sent 49.3 % of a clean model's
 * reference images to one class, against a threshold of 50, and flagged a model without a
 * backdoor at 56 %).
 *
 * A backdoor is a learned shortcut: it should fire at a fraction of the trigger's strength too,
 * while a clean model's drift towards a "sink" class under a strong global perturbation should
 * fade as the perturbation does. This measures that dose-response, probe by probe, before any
 * rule is built on it: for every model, every probe with a strength knob (SIG's delta, Blended's
 * alpha, WaNet's s), at each strength factor, the worst class's ASR (the % of reference images of
 * other classes predicted as it) and the ASR towards the true target.
 *
 *   node dist/bench/probeStrength.js --sweep attacks-cpu --clean-sweep clean-cpu \
 *     --out bench/results/probe-strength [--strengths 0.25,0.5,0.75,1] [--reference-size 500]
 *
 * Forward passes only (seconds a model). The store is the environment's or the local stack's
 * (as `ntml store`); models and reference sets are those of bench/auditDetection.ts.
 */
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { ArtifactStore } from '../store';
import { decodeClassifier } from '../core/models/layersFormat';
import { predictLabels } from '../core/models/classifier';
import type { ImageDataset } from '../core/data/dataset';
import { getAttack, parseAttackConfig } from '../core/attacks/registry';
import { DEFAULT_PROBE_SEED, PROBE_STRENGTH_KNOBS, probeConfig, rateTowardsEachClass, worst } from '../core/audit/probes';
import { referenceSet, sweepTargets, type DetectionTarget } from './auditDetection';
import { parseBenchArgs, type OptionSpecs } from './args';

/** The probes with a strength knob (core/audit/probes.ts). */
const STRENGTH_KNOBS = PROBE_STRENGTH_KNOBS as Readonly<Record<ProbeName, string>>;
type ProbeName = 'sig' | 'blended' | 'wanet';

export interface StrengthPoint {
  probe: ProbeName;
  /** factor on the default strength */
  strength: number;
  /** the knob's value at this factor */
  value: number;
  worstClass: number;
  worstAsr: number;
  /** ASR towards the attack's target (backdoored models with one target) */
  targetAsr?: number;
}

/**
 * Controls at the default strength: the same kind of perturbation that is not the library's
 * trigger. A clean model's drift towards a sink class should be the same under the control; a
 * backdoor keyed to the trigger should not be. sig-vertical: the sinusoid along the rows instead
 * of the columns (the images transposed, the SIG trigger added, transposed back); blended-seed1:
 * the Blended noise of patternSeed 1 instead of 0.
 */
export const CONTROLS = ['sig-vertical', 'blended-seed1'] as const;
type ControlName = (typeof CONTROLS)[number];

export interface ControlPoint {
  control: ControlName;
  worstClass: number;
  worstAsr: number;
  /** the control's ASR towards each class (to read it at the probe's worst class) */
  asrByClass: number[];
}

/** The images with height and width swapped (a square image's transpose). */
export function transposed(d: ImageDataset): ImageDataset {
  const { height: h, width: w, channels: c } = d;
  const out = new Uint8Array(d.images.length);
  const n = d.labels.length;
  for (let i = 0; i < n; i++) {
    const base = i * h * w * c;
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) for (let k = 0; k < c; k++) out[base + (x * h + y) * c + k] = d.images[base + (y * w + x) * c + k];
  }
  return { ...d, height: w, width: h, images: out };
}

export interface StrengthRow {
  sweep: string;
  cellId: string;
  role: 'backdoored' | 'clean';
  attack: string;
  seed: number;
  trueTarget?: number;
  points: StrengthPoint[];
  controls: ControlPoint[];
}

export interface StrengthReport {
  command: string;
  measuredAt: string;
  referenceSet: { size: number; seed: number };
  strengths: number[];
  machine: { cpu: string; logicalCores: number };
  rows: StrengthRow[];
}

/** Every probe at every strength on one model's reference set. */
export async function strengthPoints(
  predict: (images: ImageDataset) => Promise<Int32Array>,
  reference: ImageDataset,
  strengths: number[],
  trueTarget?: number,
): Promise<StrengthPoint[]> {
  const points: StrengthPoint[] = [];
  for (const probe of Object.keys(STRENGTH_KNOBS) as ProbeName[]) {
    for (const strength of strengths) {
      const config = probeConfig(probe, strength);
      const value = (config as unknown as Record<string, number>)[STRENGTH_KNOBS[probe]];
      const triggered = getAttack(probe).applyTrigger(reference, config, DEFAULT_PROBE_SEED);
      const asr = rateTowardsEachClass(await predict(triggered), reference.labels, reference.numClasses);
      const { worstClass, worstAsr } = worst(asr);
      points.push({ probe, strength, value, worstClass, worstAsr, ...(trueTarget === undefined ? {} : { targetAsr: asr[trueTarget] }) });
    }
  }
  return points;
}

/** The controls of CONTROLS on one model's reference set, at the default strength. */
export async function controlPoints(predict: (images: ImageDataset) => Promise<Int32Array>, reference: ImageDataset): Promise<ControlPoint[]> {
  const rate = async (d: ImageDataset) => rateTowardsEachClass(await predict(d), reference.labels, reference.numClasses);
  const sig = parseAttackConfig({ name: 'sig' });
  const vertical = transposed(getAttack('sig').applyTrigger(transposed(reference), sig, DEFAULT_PROBE_SEED));
  const seed1 = getAttack('blended').applyTrigger(reference, parseAttackConfig({ name: 'blended', patternSeed: 1 }), DEFAULT_PROBE_SEED);
  const out: ControlPoint[] = [];
  for (const [control, images] of [['sig-vertical', vertical], ['blended-seed1', seed1]] as const) {
    const asrByClass = await rate(images);
    out.push({ control, ...worst(asrByClass), asrByClass });
  }
  return out;
}

const pct = (v: number) => v.toFixed(1);

export function strengthMarkdown(r: StrengthReport): string {
  const lines = [
    '# Known-trigger probes against trigger strength',
    '',
    `Measured ${r.measuredAt} with \`${r.command}\`; reference set: ${r.referenceSet.size} images of each cell's clean test split ` +
      `(class-stratified, seed ${r.referenceSet.seed}), as bench/results/audit-detection. Each cell: the worst class's ASR ` +
      '(% of reference images of other classes predicted as it) → that class; for backdoored models, the ASR towards the true target after the slash. ' +
      `Strength = factor on the probe's default (${Object.entries(STRENGTH_KNOBS).map(([p, k]) => `${p}: ${k}`).join(', ')}).`,
    '',
  ];
  for (const probe of Object.keys(STRENGTH_KNOBS) as ProbeName[]) {
    lines.push(`## ${probe} probe`, '', `| model | seed | target | ${r.strengths.map((s) => `×${s}`).join(' | ')} |`, `|---|---:|---:|${r.strengths.map(() => '---:').join('|')}|`);
    for (const row of r.rows) {
      const cells = r.strengths.map((s) => {
        const p = row.points.find((q) => q.probe === probe && q.strength === s);
        if (!p) return '–';
        return `${pct(p.worstAsr)} → ${p.worstClass}${p.targetAsr === undefined ? '' : ` / ${pct(p.targetAsr)}`}`;
      });
      lines.push(`| ${row.role === 'clean' ? 'clean' : row.attack} | ${row.seed} | ${row.trueTarget ?? '–'} | ${cells.join(' | ')} |`);
    }
    lines.push('');
  }
  lines.push(
    '## Probes against their controls (default strength)',
    '',
    'Each probe\'s worst class at ×1, and the control\'s ASR towards that same class (sig: sig-vertical; blended: blended-seed1); ' +
      'excess = probe − control. A drift the control shares is the model\'s response to that kind of perturbation, not to the trigger.',
    '',
    '| model | seed | target | sig → class | sig-vertical there | excess | blended → class | blended-seed1 there | excess |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|',
  );
  for (const row of r.rows) {
    const pair = (probe: ProbeName, control: ControlName) => {
      const p = row.points.find((q) => q.probe === probe && q.strength === 1);
      const c = row.controls.find((q) => q.control === control);
      if (!p || !c) return '– | – | –';
      const there = c.asrByClass[p.worstClass];
      return `${pct(p.worstAsr)} → ${p.worstClass} | ${pct(there)} | ${pct(p.worstAsr - there)}`;
    };
    lines.push(`| ${row.role === 'clean' ? 'clean' : row.attack} | ${row.seed} | ${row.trueTarget ?? '–'} | ${pair('sig', 'sig-vertical')} | ${pair('blended', 'blended-seed1')} |`);
  }
  lines.push('');
  return lines.join('\n');
}

const USAGE = 'usage: node dist/bench/probeStrength.js --sweep NAME [--clean-sweep NAME] --out DIR [--strengths 0.25,0.5,0.75,1] [--reference-size 500] [--reference-seed 0]';
const OPTIONS: OptionSpecs = Object.fromEntries(['sweep', 'clean-sweep', 'out', 'strengths', 'reference-size', 'reference-seed'].map((n) => [n, { type: 'string' }]));

async function main(argv: string[]): Promise<void> {
  const a = parseBenchArgs(argv, OPTIONS, USAGE);
  const sweep = a.text('sweep');
  const out = a.text('out');
  if (!sweep || !out) throw new Error(`missing ${sweep ? '--out' : '--sweep'}\n${USAGE}`);
  const strengths = a.text('strengths', '0.25,0.5,0.75,1')!.split(',').map((t) => {
    const s = Number(t);
    if (!(s > 0 && s <= 4)) throw new Error(`--strengths: ${JSON.stringify(t)} is not a factor in (0, 4]`);
    return s;
  });
  const size = a.integer('reference-size', 500, 50);
  const seed = a.integer('reference-seed', 0, 0);
  const cleanSweep = a.text('clean-sweep');
  const { withStore } = await import('../cli/store');
  await withStore({ stderr: process.stderr }, async (store: ArtifactStore) => {
    const targets: DetectionTarget[] = [...(await sweepTargets(store, sweep, 'backdoored')).targets];
    if (cleanSweep) targets.push(...(await sweepTargets(store, cleanSweep, 'clean')).targets);
    const report: StrengthReport = {
      command: ['node', path.relative(process.cwd(), process.argv[1]), ...argv].join(' '),
      measuredAt: new Date().toISOString(),
      referenceSet: { size, seed },
      strengths,
      machine: { cpu: os.cpus()[0]?.model.trim() ?? 'unknown', logicalCores: os.cpus().length },
      rows: [],
    };
    for (const t of targets.sort((x, y) => x.source.seed - y.source.seed || x.source.role.localeCompare(y.source.role) || x.source.attack.localeCompare(y.source.attack))) {
      const { images } = await referenceSet(store, t.test, size, seed);
      const classifier = await decodeClassifier(await store.get(t.model), t.model.uri);
      try {
        const predict = (ds: ImageDataset) => predictLabels(classifier, ds);
        const points = await strengthPoints(predict, images, strengths, t.source.trueTarget);
        const controls = await controlPoints(predict, images);
        const s = t.source;
        report.rows.push({ sweep: s.sweep, cellId: s.cellId, role: s.role, attack: s.attack, seed: s.seed, ...(s.trueTarget === undefined ? {} : { trueTarget: s.trueTarget }), points, controls });
        process.stderr.write(`${s.role} ${s.attack} seed ${s.seed}: ${points.filter((p) => p.strength === 1).map((p) => `${p.probe} ${pct(p.worstAsr)}→${p.worstClass}`).join(', ')}\n`);
      } finally {
        classifier.model.dispose();
      }
    }
    await fs.mkdir(out, { recursive: true });
    await fs.writeFile(path.join(out, 'report.json'), `${JSON.stringify(report, null, 2)}\n`);
    await fs.writeFile(path.join(out, 'report.md'), strengthMarkdown(report));
  });
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    () => process.exit(0),
    (err: unknown) => {
      process.stderr.write(`probeStrength: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exit(1);
    },
  );
}
