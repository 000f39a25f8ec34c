/** ACC / ASR / RA of a classifier, plus NT-ML's confidence diagnostic. */
import { predictLabels, predictProbabilities, type Classifier } from '../models/classifier';
import { accuracy, attackSuccessRate, evaluateModel, type EvalResult } from '../metrics';
import type { ImageDataset } from '../data/dataset';
import { subsetDataset } from '../data/dataset';
import type { BackdoorTestSet } from '../attacks/testSet';
import { Rng } from '../rng';

export interface ModelMetrics extends EvalResult {
  /** mean softmax probability of the true class on triggered test inputs */
  meanTrueClassProbabilityOnTriggered?: number;
}

export async function evaluateClassifier(c: Classifier, test?: ImageDataset, backdoor?: BackdoorTestSet): Promise<ModelMetrics> {
  if (!test) return { acc: NaN };
  const result: ModelMetrics = await evaluateModel((ds) => predictLabels(c, ds), test, backdoor);
  if (backdoor) {
    const k = c.meta.numClasses;
    const p = await predictProbabilities(c, backdoor.images);
    let sum = 0;
    for (let i = 0; i < backdoor.trueLabels.length; i++) sum += p[i * k + backdoor.trueLabels[i]];
    result.meanTrueClassProbabilityOnTriggered = (100 * sum) / Math.max(1, backdoor.trueLabels.length);
  }
  return result;
}

/** A fixed random sample of the test sets for cheap per-epoch diagnostics. */
export function diagnosticSample(
  test: ImageDataset | undefined,
  backdoor: BackdoorTestSet | undefined,
  size: number,
  seed: number,
): { test?: ImageDataset; backdoor?: BackdoorTestSet } {
  if (!test || size <= 0) return {};
  const pick = (n: number) => (n <= size ? undefined : new Rng(seed).permutation(n).subarray(0, size).sort());
  const ti = pick(test.labels.length);
  const out: { test?: ImageDataset; backdoor?: BackdoorTestSet } = { test: ti ? subsetDataset(test, ti) : test };
  if (backdoor) {
    const bi = pick(backdoor.trueLabels.length);
    out.backdoor = bi
      ? {
          images: subsetDataset(backdoor.images, bi),
          trueLabels: Int32Array.from(bi, (i) => backdoor.trueLabels[i]),
          targetLabels: Int32Array.from(bi, (i) => backdoor.targetLabels[i]),
          sourceIndices: Int32Array.from(bi, (i) => backdoor.sourceIndices[i]),
        }
      : backdoor;
  }
  return out;
}

/** Per-epoch diagnostics of a model on a diagnostic sample: ACC, and ASR where triggered images exist (never used for selection). */
export function sampleDiagnostics(
  model: Classifier,
  sample: { test?: ImageDataset; backdoor?: BackdoorTestSet },
): (() => Promise<Record<string, number>>) | undefined {
  const { test, backdoor } = sample;
  if (!test) return undefined;
  return async () => {
    const out: Record<string, number> = { acc: accuracy(await predictLabels(model, test), test.labels) };
    if (backdoor) out.asr = attackSuccessRate(await predictLabels(model, backdoor.images), backdoor.targetLabels);
    return out;
  };
}
