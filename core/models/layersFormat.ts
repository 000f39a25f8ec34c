/**
 * Classifiers in the tfjs layers format: model.json (topology + weights manifest) and
 * binary weight files. Two encodings: a directory, for users (import their architecture,
 * export the purified model), and one packed blob, for the content-addressed store.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import type * as TF from '@tensorflow/tfjs-node';
import type { io } from '@tensorflow/tfjs-core';
import { tf } from '../tf';
import { buildModel, type ArchitectureName, type InputShape } from './architectures';
import type { Classifier, ClassifierMeta, InputRange } from './classifier';

const MAGIC = 'NTMLMDL1';

export class ModelFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ModelFormatError';
  }
}

/** A layers model as tfjs hands it to a save handler: topology, weight specs, one weight buffer. */
export interface Artifacts {
  modelTopology: object;
  weightSpecs: io.WeightsManifestEntry[];
  weightData: ArrayBuffer;
}

export async function saveArtifacts(model: TF.LayersModel): Promise<Artifacts> {
  let saved: Artifacts | undefined;
  await model.save(
    tf.io.withSaveHandler(async (a) => {
      const data = a.weightData;
      const weightData = Array.isArray(data) ? tf.io.concatenateArrayBuffers(data) : (data as ArrayBuffer);
      saved = { modelTopology: a.modelTopology as object, weightSpecs: a.weightSpecs ?? [], weightData };
      return { modelArtifactsInfo: { dateSaved: new Date(0), modelTopologyType: 'JSON' } };
    }),
  );
  if (!saved) throw new Error('tfjs did not hand over the model artifacts');
  return saved;
}

async function loadArtifacts(a: Artifacts, source: string): Promise<TF.LayersModel> {
  try {
    return await tf.loadLayersModel(tf.io.fromMemory({ modelTopology: a.modelTopology, weightSpecs: a.weightSpecs, weightData: a.weightData }));
  } catch (err) {
    throw new ModelFormatError(`${source}: not a loadable tfjs layers model: ${(err as Error).message}`);
  }
}

// --- softmax <-> logits ---------------------------------------------------------------

interface LayerJson {
  class_name: string;
  config: { activation?: string; layers?: LayerJson[]; name?: string };
}

function lastLayerJson(topology: any): LayerJson | undefined {
  const cfg = topology?.model_config ?? topology;
  const layers: LayerJson[] | undefined = cfg?.config?.layers;
  return layers?.[layers.length - 1];
}

/** Returns the topology with the last layer's softmax replaced by linear, and what it was. */
function toLogitsTopology(topology: object): { topology: object; original: 'linear' | 'softmax' } {
  const copy = JSON.parse(JSON.stringify(topology));
  const last = lastLayerJson(copy);
  if (last?.config?.activation === 'softmax') {
    last.config.activation = 'linear';
    return { topology: copy, original: 'softmax' };
  }
  if (last?.class_name === 'Softmax' || (last?.class_name === 'Activation' && last.config.activation === 'softmax')) {
    throw new ModelFormatError(
      'models whose last layer is a separate Softmax/Activation layer are not supported yet: put the softmax in the last Dense layer',
    );
  }
  return { topology: copy, original: 'linear' };
}

function withOutputActivation(topology: object, activation: 'linear' | 'softmax'): object {
  if (activation === 'linear') return topology;
  const copy = JSON.parse(JSON.stringify(topology));
  const last = lastLayerJson(copy);
  if (last) last.config.activation = activation;
  return copy;
}

function metaFromModel(model: TF.LayersModel, arch: string, inputRange: InputRange, original: 'linear' | 'softmax'): ClassifierMeta {
  const inShape = model.inputs[0]?.shape;
  const outShape = model.outputs[0]?.shape;
  if (model.inputs.length !== 1 || model.outputs.length !== 1 || !inShape || inShape.length !== 4 || !outShape || outShape.length !== 2) {
    throw new ModelFormatError(
      `expected a single-input image classifier [batch, height, width, channels] -> [batch, classes], got inputs ${JSON.stringify(
        model.inputs.map((i) => i.shape),
      )} and outputs ${JSON.stringify(model.outputs.map((o) => o.shape))}`,
    );
  }
  const [, h, w, c] = inShape;
  if (!h || !w || !c) throw new ModelFormatError(`input shape must be fully defined, got ${JSON.stringify(inShape)}`);
  return {
    arch,
    inputShape: [h, w, c],
    numClasses: outShape[1] as number,
    inputRange,
    exportedOutputActivation: original,
  };
}

// --- packed blob (store) ----------------------------------------------------------------

export async function encodeClassifier(c: Classifier): Promise<Uint8Array> {
  const a = await saveArtifacts(c.model);
  const header = Buffer.from(JSON.stringify({ meta: c.meta, modelTopology: a.modelTopology, weightSpecs: a.weightSpecs }));
  const out = Buffer.alloc(MAGIC.length + 4 + header.length + a.weightData.byteLength);
  out.write(MAGIC, 0, 'latin1');
  out.writeUInt32LE(header.length, MAGIC.length);
  header.copy(out, MAGIC.length + 4);
  Buffer.from(a.weightData).copy(out, MAGIC.length + 4 + header.length);
  return new Uint8Array(out.buffer, out.byteOffset, out.length);
}

export async function decodeClassifier(bytes: Uint8Array, source = 'model artifact'): Promise<Classifier> {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (buf.length < MAGIC.length + 4 || buf.toString('latin1', 0, MAGIC.length) !== MAGIC) {
    throw new ModelFormatError(`${source}: not an ntml model artifact (bad magic)`);
  }
  const headerLen = buf.readUInt32LE(MAGIC.length);
  const start = MAGIC.length + 4;
  if (start + headerLen > buf.length) throw new ModelFormatError(`${source}: truncated header`);
  let header: { meta: ClassifierMeta; modelTopology: object; weightSpecs: io.WeightsManifestEntry[] };
  try {
    header = JSON.parse(buf.toString('utf8', start, start + headerLen));
  } catch {
    throw new ModelFormatError(`${source}: header is not valid JSON`);
  }
  const weights = buf.subarray(start + headerLen);
  const weightData = weights.buffer.slice(weights.byteOffset, weights.byteOffset + weights.byteLength) as ArrayBuffer;
  const model = await loadArtifacts({ modelTopology: header.modelTopology, weightSpecs: header.weightSpecs, weightData }, source);
  return { model, meta: header.meta };
}

/** An independent copy (own variables, same weights): how teacher/student pairs start. */
export async function cloneClassifier(c: Classifier): Promise<Classifier> {
  return decodeClassifier(await encodeClassifier(c), `clone of ${c.meta.arch}`);
}

export function createClassifier(arch: ArchitectureName, input: InputShape, numClasses: number, seed: number): Classifier {
  const model = buildModel(arch, input, numClasses, seed);
  return {
    model,
    meta: {
      arch,
      inputShape: [input.height, input.width, input.channels],
      numClasses,
      inputRange: '0-1',
      exportedOutputActivation: 'linear',
    },
  };
}

// --- directory (users) ------------------------------------------------------------------

/** Writes model.json + weights.bin; the last activation is what the user's model had. */
export async function exportLayersModel(c: Classifier, dir: string): Promise<{ modelJson: string; weightsBin: string }> {
  const a = await saveArtifacts(c.model);
  await fs.mkdir(dir, { recursive: true });
  const modelJson = {
    format: 'layers-model',
    generatedBy: `TensorFlow.js tfjs-layers v${tf.version.tfjs}`,
    convertedBy: 'ntml',
    modelTopology: withOutputActivation(a.modelTopology, c.meta.exportedOutputActivation),
    weightsManifest: [{ paths: ['weights.bin'], weights: a.weightSpecs }],
    userDefinedMetadata: { ntml: { arch: c.meta.arch, inputRange: c.meta.inputRange, numClasses: c.meta.numClasses } },
  };
  const files = { modelJson: path.join(dir, 'model.json'), weightsBin: path.join(dir, 'weights.bin') };
  // weights first, model.json last: a reader never sees a model.json whose weights are missing
  await writeAtomically(files.weightsBin, Buffer.from(a.weightData));
  await writeAtomically(files.modelJson, Buffer.from(JSON.stringify(modelJson)));
  return files;
}

async function writeAtomically(file: string, data: Buffer): Promise<void> {
  const tmp = `${file}.tmp-${process.pid}`;
  await fs.writeFile(tmp, data);
  await fs.rename(tmp, file);
}

/**
 * Reads a user's tfjs layers model (model.json + the weight files it names).
 * `inputRange` says how the model expects pixels (the format does not record it).
 */
export async function importLayersModel(modelJsonPath: string, inputRange: InputRange = '0-1'): Promise<Classifier> {
  let text: string;
  try {
    text = await fs.readFile(modelJsonPath, 'utf8');
  } catch (err) {
    throw new ModelFormatError(`${modelJsonPath}: cannot read model.json (${(err as NodeJS.ErrnoException).code ?? err})`);
  }
  let json: any;
  try {
    json = JSON.parse(text);
  } catch {
    throw new ModelFormatError(`${modelJsonPath}: not valid JSON; expected a tfjs layers model.json`);
  }
  if (json.format && json.format !== 'layers-model') {
    throw new ModelFormatError(`${modelJsonPath}: format is "${json.format}", expected "layers-model" (graph models cannot be trained)`);
  }
  if (!json.modelTopology || !Array.isArray(json.weightsManifest)) {
    throw new ModelFormatError(`${modelJsonPath}: expected "modelTopology" and "weightsManifest" (tfjs layers format)`);
  }
  const specs: io.WeightsManifestEntry[] = [];
  const buffers: Buffer[] = [];
  for (const group of json.weightsManifest) {
    for (const p of group.paths as string[]) {
      if (path.isAbsolute(p) || p.split(/[\\/]/).includes('..')) {
        throw new ModelFormatError(`${modelJsonPath}: weight path "${p}" must stay inside the model's folder`);
      }
      const file = path.join(path.dirname(modelJsonPath), p);
      try {
        buffers.push(await fs.readFile(file));
      } catch {
        throw new ModelFormatError(`${modelJsonPath}: weight file "${p}" listed in weightsManifest is missing`);
      }
    }
    specs.push(...group.weights);
  }
  const weightData = Buffer.concat(buffers);
  const expected = specs.reduce((n, s) => n + s.shape.reduce((a: number, b: number) => a * b, 1) * 4, 0);
  if (specs.every((s) => s.dtype === 'float32' && !s.quantization) && expected !== weightData.length) {
    throw new ModelFormatError(`${modelJsonPath}: weight files hold ${weightData.length} bytes, the manifest needs ${expected}`);
  }
  const { topology, original } = toLogitsTopology(json.modelTopology);
  const ab = weightData.buffer.slice(weightData.byteOffset, weightData.byteOffset + weightData.byteLength) as ArrayBuffer;
  const model = await loadArtifacts({ modelTopology: topology, weightSpecs: specs, weightData: ab }, modelJsonPath);
  const declared = json.userDefinedMetadata?.ntml;
  const meta = metaFromModel(model, declared?.arch ?? 'custom', declared?.inputRange ?? inputRange, original);
  return { model, meta };
}
