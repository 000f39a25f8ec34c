/**
 * Where split distillation's target-class mass comes from, and the student's proxy ASR
 * (issue 20 item 1). Both need no test data: the proxy ASR is the share of the
 * suspected-poisoned training inputs (splitEvidence.ts) the student sends to t^; the target
 * mass is the mean probability of t^ in the distillation target over the kept inputs, split by
 * what the inputs are when that is known (evaluation mode: poisoned and WaNet's noise-mode
 * inputs; everything else counts as clean).
 */

/** Above this proxy ASR the report flags the purified student (the backdoor may be back). */
export const HIGH_PROXY_ASR = 0.2;

/** Ground truth of the training set, known only in evaluation mode. */
export interface TrainingGroups {
  poisoned?: ArrayLike<number>;
  /** inputs modified but keeping their label (WaNet's noise mode) */
  noise?: ArrayLike<number>;
}

export function proxyAsr(predOnSuspected: Int32Array, target: number): number | undefined {
  if (predOnSuspected.length === 0) return undefined;
  let hit = 0;
  for (const p of predOnSuspected) if (p === target) hit++;
  return hit / predOnSuspected.length;
}

/**
 * Mean t^ probability of the distillation target over the kept inputs: `targetMass` over all
 * of them, and per group (`targetMassClean`, `targetMassNoise`, `targetMassPoisoned`) when
 * groups are given; a group with no kept input is left out. `weights` (splitGate weight) weight
 * each input's share.
 */
export function targetMassBySource(
  targetProbability: (i: number) => number,
  kept: Int32Array,
  groups?: TrainingGroups,
  weights?: Float32Array,
): Record<string, number> {
  const group = new Map<number, 'Poisoned' | 'Noise'>();
  for (const i of Array.from(groups?.noise ?? [])) group.set(i, 'Noise');
  for (const i of Array.from(groups?.poisoned ?? [])) group.set(i, 'Poisoned');
  const sum: Record<string, number> = {};
  const weight: Record<string, number> = {};
  const add = (key: string, v: number, w: number) => {
    sum[key] = (sum[key] ?? 0) + v * w;
    weight[key] = (weight[key] ?? 0) + w;
  };
  for (const i of kept) {
    const w = weights ? weights[i] : 1;
    const v = targetProbability(i);
    add('targetMass', v, w);
    if (groups) add(`targetMass${group.get(i) ?? 'Clean'}`, v, w);
  }
  const out: Record<string, number> = {};
  for (const key of Object.keys(sum)) if (weight[key] > 0) out[key] = sum[key] / weight[key];
  return out;
}

/** t^ as the kept inputs imply it: the one class f_std assigns to every input left out (undefined if none or several). */
export function targetLeftOut(standardPred: Int32Array, kept: Int32Array): number | undefined {
  const inKept = new Uint8Array(standardPred.length);
  for (const i of kept) inKept[i] = 1;
  let target: number | undefined;
  for (let i = 0; i < standardPred.length; i++) {
    if (inKept[i]) continue;
    // a kept input f_std assigns to the candidate would contradict it (checked below)
    if (target === undefined) target = standardPred[i];
    else if (standardPred[i] !== target) return undefined;
  }
  if (target !== undefined) for (const i of kept) if (standardPred[i] === target) return undefined;
  return target;
}
