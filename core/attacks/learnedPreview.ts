/**
 * The preview of a trigger as a run recorded it: the poison record's trigger parameters (and
 * the artifacts they name) applied to the run's own test images. For learned triggers this is
 * the only way to see them, and the picture shows what they are made of:
 *   - inputaware: rows PATTERN (G(x)) and MASK (m(x), grey) per image, from the stored generators;
 *   - narcissus: a row TRIGGER, the learned perturbation at mid-grey (+-linfRadius -> 0..255);
 *   - every other attack: the standard rows, with the recorded parameters (WaNet's grid).
 * Node-only; TensorFlow is loaded only for Input-Aware's generators.
 */
import { createHash } from 'node:crypto';
import type { ImageDataset } from '../data/dataset';
import { AttackConfigError, type BaseAttackConfig, type TriggerParameters } from './base';
import { attackPreviewPng, type PreviewOptions, type PreviewRow } from './preview';
import { narcissusPerturbation } from './narcissusPerturbation';
import type { NarcissusConfig } from './configs';

export interface RecordedTrigger {
  config: BaseAttackConfig;
  /** the attack seed the run poisoned with */
  attackSeed: number;
  triggerParameters: TriggerParameters;
}

/** Reads an artifact the record names (Input-Aware's generators): the artifact store's `get`. */
export type ArtifactReader = (ref: { uri: string; sha256: string; bytes: number }) => Promise<Uint8Array>;

export interface RecordedPreview {
  png: Buffer;
  /** row labels, top to bottom */
  rows: string[];
}

const STANDARD_ROWS = ['CLEAN', 'TRIGGERED', '|DIFF| X10'];

export async function recordedTriggerPreviewPng(
  test: ImageDataset,
  trigger: RecordedTrigger,
  read: ArtifactReader,
  count: number,
  options: Pick<PreviewOptions, 'scale'> = {},
): Promise<RecordedPreview> {
  const { config, attackSeed, triggerParameters } = trigger;
  if (config.name === 'inputaware') return inputAwarePreview(test, trigger, read, count, options);
  if (config.name === 'narcissus') {
    const delta = narcissusPerturbation(triggerParameters, test);
    const radius = (config as unknown as NarcissusConfig).linfRadius;
    const tile = Uint8Array.from(delta, (d) => Math.max(0, Math.min(255, Math.round(128 + (d / radius) * 127))));
    const extraRows = (images: ImageDataset): PreviewRow[] => {
      const n = images.labels.length;
      const pixels = new Uint8Array(n * tile.length);
      for (let k = 0; k < n; k++) pixels.set(tile, k * tile.length);
      return [{ label: 'TRIGGER', pixels, channels: test.channels }];
    };
    const png = attackPreviewPng(test, config, attackSeed, count, { ...options, triggerParameters, extraRows });
    return { png, rows: [...STANDARD_ROWS, 'TRIGGER'] };
  }
  return { png: attackPreviewPng(test, config, attackSeed, count, { ...options, triggerParameters }), rows: STANDARD_ROWS };
}

async function inputAwarePreview(
  test: ImageDataset,
  trigger: RecordedTrigger,
  read: ArtifactReader,
  count: number,
  options: Pick<PreviewOptions, 'scale'>,
): Promise<RecordedPreview> {
  const params = trigger.triggerParameters;
  const uri = params.generators;
  if (typeof uri !== 'string') {
    throw new AttackConfigError('triggerParameters.generators', 'the record names no stored generators (an Input-Aware run stores them when its attacker\'s run ends)');
  }
  if (typeof params.generatorsSha256 !== 'string' || typeof params.generatorBytes !== 'number') {
    throw new AttackConfigError('triggerParameters.generatorsSha256', `the record names ${uri} without its sha256 and size`);
  }
  const bytes = await read({ uri, sha256: params.generatorsSha256, bytes: params.generatorBytes });
  const digest = createHash('sha256').update(bytes).digest('hex');
  if (params.generatorsSha256 !== digest) {
    throw new AttackConfigError('triggerParameters.generatorsSha256', `${uri} has sha256 ${digest}, the record says ${params.generatorsSha256}`);
  }
  const { tf } = await import('../tf');
  const { loadInputAwareGenerators, disposeInputAwareGenerators, patternOf, maskOf } = await import('./inputAwareTraining');
  const { unregisterInputAwareGenerators } = await import('./inputAware');
  const { generators, handle } = await loadInputAwareGenerators(bytes, uri);
  try {
    const extraRows = (images: ImageDataset): PreviewRow[] => {
      const { height: H, width: W, channels: C } = images;
      const n = images.labels.length;
      const [pattern, mask] = tf.tidy(() => {
        const x = tf.tensor4d(Float32Array.from(images.images, (v) => v / 255), [n, H, W, C]);
        return [tf.mul(patternOf(generators, x, false), 255), tf.mul(maskOf(generators, x, false), 255)];
      });
      const toPixels = (t: { dataSync(): ArrayLike<number> }) => Uint8Array.from(t.dataSync(), (v) => Math.max(0, Math.min(255, Math.round(v))));
      const rows = [
        { label: 'PATTERN', pixels: toPixels(pattern), channels: C },
        { label: 'MASK', pixels: toPixels(mask), channels: 1 },
      ];
      tf.dispose([pattern, mask]);
      return rows;
    };
    const png = attackPreviewPng(test, trigger.config, trigger.attackSeed, count, { ...options, triggerParameters: { ...params, generatorsId: handle.id }, extraRows });
    return { png, rows: [...STANDARD_ROWS, 'PATTERN', 'MASK'] };
  } finally {
    unregisterInputAwareGenerators(handle.id);
    disposeInputAwareGenerators(generators);
  }
}
