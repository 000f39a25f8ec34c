/**
 * Reading the deployed model an audit checks: a packed model in the artifact store, or a tfjs
 * layers model.json (local path, file:// or s3:// URI) with the weight files its manifest
 * names. Its digest pins it across audits: the stored artifact's sha256, or for a layers
 * model the sha256 of the listing "<file> <sha256>\n" over model.json and every weight file,
 * so a changed byte in any of them changes the digest.
 *
 * Problems with the model itself (missing, corrupt, not a layers model) are AuditModelErrors
 * naming the file: they will not change on retry. Store and network errors pass through.
 */
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ArtifactIntegrityError, ArtifactNotFoundError, readArtifactUri, sha256Hex, type ArtifactRef, type ArtifactStore, type S3Options } from '../../store';
import { LAYERS_ONLY, type DeployedModel } from '../../schemas/audit';
import { decodeClassifier, importLayersModel, ModelFormatError } from '../models/layersFormat';
import type { Classifier } from '../models/classifier';
import type { ImageDataset } from '../data/dataset';
import type { ModelFile } from './report';

/** The deployed model cannot be audited as given: missing, corrupt, or not a layers model. */
export class AuditModelError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AuditModelError';
  }
}

export interface ModelSources {
  /** the artifact store that holds `artifact` models */
  store: ArtifactStore;
  /** how to reach s3:// locations of layers models */
  s3: S3Options;
}

export interface ReadModel {
  classifier: Classifier;
  source: string;
  digest: string;
  files: ModelFile[];
}

/** Bytes at a path, file:// or s3:// URI; undefined when there is no such object. */
async function readLocation(location: string, s3: S3Options): Promise<Uint8Array | undefined> {
  try {
    if (location.startsWith('s3://')) return (await readArtifactUri(location, { s3 })).data;
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(location) && !location.startsWith('file://')) {
      throw new AuditModelError(`the deployed model ${location}: unsupported location; expected a path, file:// or s3:// URI`);
    }
    return new Uint8Array(await fs.readFile(location.startsWith('file://') ? new URL(location).pathname : location));
  } catch (err) {
    if (err instanceof ArtifactNotFoundError || (err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

function sibling(location: string, relative: string): string {
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(location)) return `${location.slice(0, location.lastIndexOf('/') + 1)}${relative}`;
  return path.join(path.dirname(location), relative);
}

/** One digest over every file of a layers model (model.json first, then the manifest's order). */
export function layersModelDigest(files: ModelFile[]): string {
  return sha256Hex(Buffer.from(files.map((f) => `${f.name} ${f.sha256}\n`).join('')));
}

interface LayersModelBytes {
  files: Array<ModelFile & { data: Uint8Array }>;
  digest: string;
}

/** model.json and the weight files its manifest names, with their digests (no TensorFlow needed). */
export async function readLayersModelFiles(location: string, s3: S3Options): Promise<LayersModelBytes> {
  const json = await readLocation(location, s3);
  if (!json) throw new AuditModelError(`the deployed model ${location} does not exist (no model.json there)`);
  let manifest: Array<{ paths?: unknown }>;
  try {
    const parsed = JSON.parse(Buffer.from(json).toString('utf8'));
    manifest = Array.isArray(parsed?.weightsManifest) ? parsed.weightsManifest : [];
  } catch {
    throw new AuditModelError(`the deployed model ${location} is corrupt: model.json is not valid JSON; ${LAYERS_ONLY}`);
  }
  const files: LayersModelBytes['files'] = [{ name: 'model.json', sha256: sha256Hex(json), bytes: json.byteLength, data: json }];
  for (const group of manifest) {
    for (const p of Array.isArray(group.paths) ? group.paths : []) {
      if (typeof p !== 'string' || path.isAbsolute(p) || p.split(/[\\/]/).includes('..')) {
        throw new AuditModelError(`the deployed model ${location}: weight path ${JSON.stringify(p)} must stay inside the model's folder`);
      }
      const data = await readLocation(sibling(location, p), s3);
      if (!data) throw new AuditModelError(`the deployed model ${location} is incomplete: weight file "${p}" listed in its weightsManifest is missing`);
      files.push({ name: p, sha256: sha256Hex(data), bytes: data.byteLength, data });
    }
  }
  return { files, digest: layersModelDigest(files) };
}

async function readStoredModel(ref: ArtifactRef, store: ArtifactStore): Promise<ReadModel> {
  let bytes: Uint8Array;
  try {
    bytes = await store.get(ref);
  } catch (err) {
    if (err instanceof ArtifactNotFoundError) {
      throw new AuditModelError(`the model artifact ${ref.uri} (sha256 ${ref.sha256}) is missing from the store ${store.location}`);
    }
    if (err instanceof ArtifactIntegrityError) {
      throw new AuditModelError(
        `the model artifact ${ref.uri} is corrupt: the store holds ${err.actual.bytes} bytes with sha256 ${err.actual.sha256}, ` +
          `the reference says ${err.expected.bytes} bytes with sha256 ${err.expected.sha256}`,
      );
    }
    throw err;
  }
  try {
    const classifier = await decodeClassifier(bytes, ref.uri);
    return { classifier, source: ref.uri, digest: ref.sha256, files: [{ name: path.basename(ref.uri), sha256: ref.sha256, bytes: ref.bytes }] };
  } catch (err) {
    if (err instanceof ModelFormatError) throw new AuditModelError(`${err.message}; a stored model must be one ntml wrote (a packed tfjs layers model); ${LAYERS_ONLY}`);
    throw err;
  }
}

/** The layers model's files copied to a folder of their own (so nothing else beside model.json is read), then loaded. */
async function readLayersModel(location: string, inputRange: DeployedModel['inputRange'], s3: S3Options): Promise<ReadModel> {
  const { files, digest } = await readLayersModelFiles(location, s3);
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ntml-audit-model-'));
  try {
    for (const f of files) {
      await fs.mkdir(path.dirname(path.join(dir, f.name)), { recursive: true });
      await fs.writeFile(path.join(dir, f.name), f.data);
    }
    const copy = path.join(dir, 'model.json');
    let classifier: Classifier;
    try {
      classifier = await importLayersModel(copy, inputRange ?? '0-1');
    } catch (err) {
      if (err instanceof ModelFormatError) {
        throw new AuditModelError(`the deployed model ${err.message.split(copy).join(location)}; ${LAYERS_ONLY}`);
      }
      throw err;
    }
    return { classifier, source: location, digest, files: files.map(({ name, sha256, bytes }) => ({ name, sha256, bytes })) };
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}

/** Reads and loads the deployed model; the caller disposes `classifier.model`. */
export function readDeployedModel(m: DeployedModel, sources: ModelSources): Promise<ReadModel> {
  return m.artifact ? readStoredModel(m.artifact, sources.store) : readLayersModel(m.layersModel!, m.inputRange, sources.s3);
}

/**
 * The digest an audit will record for this model, without loading it (`ntml audit digest`):
 * what to pin as `policy.integrity.expectedDigest`.
 */
export async function deployedModelDigest(m: DeployedModel, s3: S3Options): Promise<{ digest: string; files: ModelFile[] }> {
  if (m.artifact) return { digest: m.artifact.sha256, files: [{ name: path.basename(m.artifact.uri), sha256: m.artifact.sha256, bytes: m.artifact.bytes }] };
  const { files, digest } = await readLayersModelFiles(m.layersModel!, s3);
  return { digest, files: files.map(({ name, sha256, bytes }) => ({ name, sha256, bytes })) };
}

/** The reference set must be images of the model's input shape with its number of classes. */
export function assertReferenceFits(meta: Classifier['meta'], reference: ImageDataset): void {
  const [h, w, c] = meta.inputShape;
  if (reference.height !== h || reference.width !== w || reference.channels !== c || reference.numClasses !== meta.numClasses) {
    throw new AuditModelError(
      `the deployed model expects ${h}x${w}x${c} images and ${meta.numClasses} classes, the reference set has ` +
        `${reference.height}x${reference.width}x${reference.channels} and ${reference.numClasses}`,
    );
  }
}
