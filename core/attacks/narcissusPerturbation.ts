/**
 * The learned Narcissus trigger as it travels: the parameters narcissusTrigger.ts hands back
 * and the poison record stores, and the base64 codec of the perturbation. Shared by the
 * plugin (narcissus.ts, which applies the trigger) and the trigger's optimiser
 * (narcissusTrigger.ts, which needs TensorFlow), so neither imports the other's module back.
 */
import { AttackConfigError, imageBytes, type DatasetShape, type TriggerParameters } from './base';

/** What narcissusTrigger.ts hands back and the record stores. */
export interface NarcissusTriggerParameters extends TriggerParameters {
  /** base64 of the float32 HWC perturbation in [0,1] units */
  perturbation: string;
  shape: [number, number, number];
  linfRadius: number;
  testMultiplier: number;
  /** which POOD set the surrogate saw, in words, e.g. "synthetic (2000 images, 6 classes, seed 1)" */
  pood: string;
  poodFormat: 'synthetic' | 'fashionMnist';
  /** target-class samples the attacker used for warm-up and trigger generation */
  attackerSamples: number;
  surrogate: { arch: string; epochs: number; classes: number };
  /** mean CE of the surrogate towards the target on the attacker's samples + delta, per 10% of rounds */
  triggerLoss: number[];
  /** optimiser of delta, documented for the report */
  optimiser: string;
}

export function encodePerturbation(delta: Float32Array): string {
  const le = new Uint8Array(delta.length * 4);
  const view = new DataView(le.buffer);
  for (let i = 0; i < delta.length; i++) view.setFloat32(4 * i, delta[i], true);
  return Buffer.from(le).toString('base64');
}

export function decodePerturbation(text: string, length: number, field = 'triggerParameters.perturbation'): Float32Array {
  const bytes = Buffer.from(text, 'base64');
  if (bytes.length !== 4 * length) {
    throw new AttackConfigError(field, `holds ${bytes.length} bytes; ${length} float32 values (${4 * length} bytes) expected`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Float32Array(length);
  for (let i = 0; i < length; i++) out[i] = view.getFloat32(4 * i, true);
  return out;
}

/** The perturbation from a record's trigger parameters, checked against the images' shape. */
export function narcissusPerturbation(params: TriggerParameters | undefined, ds: DatasetShape): Float32Array {
  if (!params || typeof params.perturbation !== 'string') {
    throw new AttackConfigError(
      'triggerParameters',
      'narcissus needs its learned perturbation: run preparePoison (it trains the surrogate and optimises the trigger) and pass its result',
    );
  }
  const shape = params.shape as unknown;
  const want = [ds.height, ds.width, ds.channels];
  if (!Array.isArray(shape) || shape.join('x') !== want.join('x')) {
    throw new AttackConfigError('triggerParameters.shape', `perturbation is ${JSON.stringify(shape)}, the images are ${want.join('x')}`);
  }
  return decodePerturbation(params.perturbation, imageBytes(ds));
}
