/**
 * Candidate remedies for split distillation re-importing a backdoor (issue 20): each is a
 * switch of core/ntml/config.ts, off by default. All act on probability rows (n x k,
 * row-major) computed once on un-augmented training inputs: f_std's (pStd) and those of the
 * model after mutual learning (pMl), which starts split distillation.
 */

/**
 * `splitTargetSource: mutualLearning`: t^'s column from the model after mutual learning,
 * the rest of the distribution from f_std:
 *   q = p_ML(t^) e_t^ + (1 - p_ML(t^)) * f_std's distribution over the other classes, renormalised.
 * Where f_std puts (almost) all its mass on t^ the rest is uniform, as for `soft` NT labels.
 */
export function mlTargetColumn(pStd: Float32Array, pMl: Float32Array, target: number, k: number): Float32Array {
  const n = pStd.length / k;
  const q = new Float32Array(pStd.length);
  for (let i = 0; i < n; i++) {
    const o = i * k;
    const keep = pMl[o + target];
    const rest = 1 - pStd[o + target];
    for (let j = 0; j < k; j++) {
      if (j === target) q[o + j] = keep;
      else q[o + j] = (1 - keep) * (rest > 1e-6 ? pStd[o + j] / rest : 1 / (k - 1));
    }
  }
  return q;
}

/** How much more mass f_std puts on t^ than the model after mutual learning, for input i. */
export function targetDisagreement(pStd: Float32Array, pMl: Float32Array, i: number, target: number, k: number): number {
  return pStd[i * k + target] - pMl[i * k + target];
}

/** `splitGate: drop`: the kept inputs whose disagreement on t^ is at most `threshold`. */
export function gateByDisagreement(kept: Int32Array, pStd: Float32Array, pMl: Float32Array, target: number, k: number, threshold: number): Int32Array {
  return kept.filter((i) => targetDisagreement(pStd, pMl, i, target, k) <= threshold);
}

/**
 * `splitGate: weight`: per-input loss weights 1 - clamp(disagreement, 0, 1) (indexed by input),
 * so an input where f_std alone backs t^ contributes nothing and one where both agree counts fully.
 */
export function disagreementWeights(pStd: Float32Array, pMl: Float32Array, target: number, k: number): Float32Array {
  const n = pStd.length / k;
  const w = new Float32Array(n);
  for (let i = 0; i < n; i++) w[i] = 1 - Math.min(1, Math.max(0, targetDisagreement(pStd, pMl, i, target, k)));
  return w;
}

/** Soft targets with each row scaled by its weight: soft cross-entropy is then the weighted loss. */
export function weightRows(q: Float32Array, w: Float32Array, k: number): Float32Array {
  const out = new Float32Array(q.length);
  for (let i = 0; i < w.length; i++) for (let j = 0; j < k; j++) out[i * k + j] = q[i * k + j] * w[i];
  return out;
}
