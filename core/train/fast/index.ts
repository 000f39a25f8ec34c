/**
 * The fast training path: fused TensorFlow kernels for BatchNormalization and ReLU
 * (./forward), the SGD update as native ops (./sgdUpdate). On by default; NTML_FAST_PATH=0
 * (or an explicit `fastPath: false`) selects the plain tfjs composition, which computes the
 * same function up to float rounding.
 */
import type * as TF from '@tensorflow/tfjs-node';
import { tf } from '../../tf';
import { nativeBackendActive } from './native';
import { fusedBatchNorm } from './batchNorm';
import { fastApply } from './forward';
import type { ActivationPattern } from './activationPattern';

export { fastApply, supportsFastApply, isPlainRelu, inputGradientConv, type FastApplyOptions } from './forward';
export { fusedBatchNorm } from './batchNorm';
export { ActivationPattern, assertFrozenPatternModel, frozenPatternRefusal } from './activationPattern';
export { fastRelu } from './relu';

const OFF = new Set(['0', 'false', 'off', 'no']);

/** NTML_FAST_PATH unset or anything but 0/false/off/no: requested. */
export function fastPathRequested(): boolean {
  const v = process.env.NTML_FAST_PATH;
  return v === undefined || !OFF.has(v.trim().toLowerCase());
}

let availability: { ok: boolean; reason?: string } | undefined;

/** Whether the native kernels run here (checked once with a tiny forward + backward). */
export function fastPathAvailability(): { ok: boolean; reason?: string } {
  if (availability) return availability;
  if (!nativeBackendActive()) {
    availability = { ok: false, reason: `the active tfjs backend is "${tf.getBackend()}", not the native "tensorflow" one` };
    return availability;
  }
  try {
    tf.tidy(() => {
      const x = tf.ones([2, 1, 1, 1]).mul(tf.tensor4d([1, 3], [2, 1, 1, 1]));
      const grad = tf.grad((v: typeof x) => {
        const r = fusedBatchNorm(v as never, tf.ones([1]), tf.zeros([1]), tf.zeros([1]), tf.ones([1]), 1e-3, true);
        r.batchMean?.dispose();
        r.batchVariance?.dispose();
        return r.y.sum();
      })(x);
      grad.dataSync();
    });
    availability = { ok: true };
  } catch (err) {
    availability = { ok: false, reason: (err as Error).message.split('\n')[0] };
  }
  return availability;
}

let warned = false;

/**
 * The fast path for this training run: `requested` (default: NTML_FAST_PATH) and the native
 * kernels available. Unavailable kernels fall back to the plain path with one warning.
 */
export function useFastPath(requested: boolean = fastPathRequested()): boolean {
  if (!requested) return false;
  const a = fastPathAvailability();
  if (!a.ok && !warned) {
    warned = true;
    console.warn(`ntml: fused training kernels unavailable (${a.reason}); training on the plain tfjs path`);
  }
  return a.ok;
}

/**
 * The model's forward pass: through the fused kernels when `fast` (default: the fast path
 * setting, NTML_FAST_PATH), else tfjs-layers' own composition. Same function up to float rounding.
 */
export function applyModel(model: TF.LayersModel, x: TF.Tensor, training: boolean, fast: boolean = useFastPath()): TF.Tensor {
  return forward(model, x, training, fast) as TF.Tensor;
}

/**
 * applyModel in inference mode for a loss that is differentiated only to the input (or to a
 * trigger or perturbation upstream of it), never to the weights: on the fast path the
 * convolutions' backward then skips the filter gradients (Conv2DBackpropFilter), about a fifth
 * of such a step on smallCnn. Same function.
 */
export function applyModelForInputGradients(model: TF.LayersModel, x: TF.Tensor, fast: boolean = useFastPath()): TF.Tensor {
  return (fast ? fastApply(model, x, false, { inputGradientsOnly: true }) : model.apply(x, { training: false })) as TF.Tensor;
}

/**
 * The inference forward with the ReLU / max-pool pattern recorded into `pattern` (a fresh one) or
 * frozen to it (./activationPattern); always the graph walk, as the pattern ops live there.
 * `inputGradientsOnly` as in applyModelForInputGradients.
 */
export function applyModelWithPattern(model: TF.LayersModel, x: TF.Tensor, pattern: ActivationPattern, inputGradientsOnly = false): TF.Tensor {
  return fastApply(model, x, false, { activationPattern: pattern, inputGradientsOnly }) as TF.Tensor;
}

/** applyModel for a model with several outputs (e.g. intermediate features): always a list. */
export function applyModelOutputs(model: TF.LayersModel, x: TF.Tensor, training: boolean, fast: boolean = useFastPath()): TF.Tensor[] {
  const out = forward(model, x, training, fast);
  return Array.isArray(out) ? out : [out];
}

function forward(model: TF.LayersModel, x: TF.Tensor, training: boolean, fast: boolean): TF.Tensor | TF.Tensor[] {
  return fast ? fastApply(model, x, training) : (model.apply(x, { training }) as TF.Tensor | TF.Tensor[]);
}
