/**
 * An in-memory labelled image data set: uint8 pixels, HWC per image, images back to back.
 * This is the one representation every loader produces and every attack, model and
 * metric consumes.
 */
export interface ImageDataset {
  /** Human-readable origin, e.g. "cifar10:train", "synthetic:seed=1". */
  name: string;
  height: number;
  width: number;
  channels: number;
  numClasses: number;
  /** length = size * height * width * channels */
  images: Uint8Array;
  /** length = size, each in [0, numClasses) */
  labels: Int32Array;
  classNames?: string[];
}

export class DatasetError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DatasetError';
  }
}

export function datasetSize(ds: ImageDataset): number {
  return ds.labels.length;
}

export function imageBytes(ds: Pick<ImageDataset, 'height' | 'width' | 'channels'>): number {
  return ds.height * ds.width * ds.channels;
}

/** Throws a DatasetError naming `source` and the first inconsistency found. */
export function validateDataset(ds: ImageDataset, source = ds.name): void {
  const dims = { height: ds.height, width: ds.width, channels: ds.channels, numClasses: ds.numClasses };
  for (const [field, value] of Object.entries(dims)) {
    if (!Number.isInteger(value) || value <= 0) {
      throw new DatasetError(`${source}: ${field} must be a positive integer, got ${value}`);
    }
  }
  if (ds.channels !== 1 && ds.channels !== 3) {
    throw new DatasetError(`${source}: channels must be 1 or 3, got ${ds.channels}`);
  }
  const n = ds.labels.length;
  if (ds.images.length !== n * imageBytes(ds)) {
    throw new DatasetError(
      `${source}: expected ${n} images of ${ds.height}x${ds.width}x${ds.channels} = ${n * imageBytes(ds)} bytes, got ${ds.images.length}`,
    );
  }
  for (let i = 0; i < n; i++) {
    const y = ds.labels[i];
    if (!Number.isInteger(y) || y < 0 || y >= ds.numClasses) {
      throw new DatasetError(`${source}: label of record ${i} is ${y}, expected an integer in [0, ${ds.numClasses - 1}]`);
    }
  }
}

/** A new data set holding the given records, in the given order (pixels copied). */
export function subsetDataset(ds: ImageDataset, indices: ArrayLike<number>, name = ds.name): ImageDataset {
  const per = imageBytes(ds);
  const images = new Uint8Array(indices.length * per);
  const labels = new Int32Array(indices.length);
  for (let k = 0; k < indices.length; k++) {
    const i = indices[k];
    images.set(ds.images.subarray(i * per, (i + 1) * per), k * per);
    labels[k] = ds.labels[i];
  }
  return { ...ds, name, images, labels };
}

/** The records of `a` followed by those of `b` (same image shape and classes; pixels copied). */
export function concatDatasets(a: ImageDataset, b: ImageDataset, name = `${a.name}+${b.name}`): ImageDataset {
  for (const field of ['height', 'width', 'channels', 'numClasses'] as const) {
    if (a[field] !== b[field]) throw new DatasetError(`cannot join ${a.name} and ${b.name}: ${field} ${a[field]} vs ${b[field]}`);
  }
  const images = new Uint8Array(a.images.length + b.images.length);
  images.set(a.images);
  images.set(b.images, a.images.length);
  const labels = new Int32Array(a.labels.length + b.labels.length);
  labels.set(a.labels);
  labels.set(b.labels, a.labels.length);
  return { ...a, name, images, labels };
}
