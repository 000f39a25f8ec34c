/**
 * CIFAR-10, binary version (`cifar-10-batches-bin`).
 *
 * Each file is a sequence of 3073-byte records: 1 label byte, then 1024 bytes of red,
 * 1024 of green, 1024 of blue, each plane 32x32 row-major. We convert to HWC.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { DatasetError, type ImageDataset } from './dataset';

export const CIFAR10_SIDE = 32;
export const CIFAR10_PLANE = CIFAR10_SIDE * CIFAR10_SIDE;
export const CIFAR10_RECORD_BYTES = 1 + 3 * CIFAR10_PLANE; // 3073
export const CIFAR10_NUM_CLASSES = 10;
export const CIFAR10_CLASS_NAMES = [
  'airplane',
  'automobile',
  'bird',
  'cat',
  'deer',
  'dog',
  'frog',
  'horse',
  'ship',
  'truck',
];

export const CIFAR10_TRAIN_FILES = ['data_batch_1.bin', 'data_batch_2.bin', 'data_batch_3.bin', 'data_batch_4.bin', 'data_batch_5.bin'];
export const CIFAR10_TEST_FILES = ['test_batch.bin'];

export type Split = 'train' | 'test';

/**
 * Parses the bytes of one CIFAR-10 batch file. `file` names the source in errors.
 * Writes HWC pixels into `images` at record offset `offset` and labels likewise.
 */
function parseBatch(bytes: Uint8Array, file: string, images: Uint8Array, labels: Int32Array, offset: number): void {
  const n = bytes.length / CIFAR10_RECORD_BYTES;
  const px = CIFAR10_PLANE * 3;
  for (let r = 0; r < n; r++) {
    const base = r * CIFAR10_RECORD_BYTES;
    const label = bytes[base];
    if (label >= CIFAR10_NUM_CLASSES) {
      throw new DatasetError(
        `${file}: record ${r} has label ${label}, expected a CIFAR-10 label in [0, ${CIFAR10_NUM_CLASSES - 1}]`,
      );
    }
    labels[offset + r] = label;
    const out = (offset + r) * px;
    const src = base + 1;
    for (let p = 0; p < CIFAR10_PLANE; p++) {
      const o = out + p * 3;
      images[o] = bytes[src + p];
      images[o + 1] = bytes[src + CIFAR10_PLANE + p];
      images[o + 2] = bytes[src + 2 * CIFAR10_PLANE + p];
    }
  }
}

async function readFileChecked(file: string, expected: string): Promise<Buffer> {
  try {
    return await fs.readFile(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      throw new DatasetError(`${file}: file not found; expected ${expected}`);
    }
    throw new DatasetError(`${file}: cannot be read (${(err as Error).message}); expected ${expected}`);
  }
}

function checkRecordSize(bytes: Uint8Array, file: string): void {
  if (bytes.length === 0) {
    throw new DatasetError(`${file}: file is empty; expected CIFAR-10 records of ${CIFAR10_RECORD_BYTES} bytes`);
  }
  if (bytes.length % CIFAR10_RECORD_BYTES !== 0) {
    const whole = Math.floor(bytes.length / CIFAR10_RECORD_BYTES);
    throw new DatasetError(
      `${file}: size ${bytes.length} bytes is not a multiple of the CIFAR-10 record size ${CIFAR10_RECORD_BYTES} ` +
        `(1 label byte + 3072 pixel bytes); ${whole} whole records and ${bytes.length - whole * CIFAR10_RECORD_BYTES} ` +
        `stray bytes: the file is truncated or not a CIFAR-10 binary batch`,
    );
  }
}

/** Whole batch files (size-checked), their records in file order, as one data set. */
function datasetOfBatches(name: string, buffers: Uint8Array[], files: string[], classNames: string[]): ImageDataset {
  const total = buffers.reduce((s, b) => s + b.length / CIFAR10_RECORD_BYTES, 0);
  const images = new Uint8Array(total * CIFAR10_PLANE * 3);
  const labels = new Int32Array(total);
  let offset = 0;
  buffers.forEach((bytes, k) => {
    parseBatch(bytes, files[k], images, labels, offset);
    offset += bytes.length / CIFAR10_RECORD_BYTES;
  });
  return {
    name,
    height: CIFAR10_SIDE,
    width: CIFAR10_SIDE,
    channels: 3,
    numClasses: CIFAR10_NUM_CLASSES,
    images,
    labels,
    classNames,
  };
}

/** Reads one batch file (e.g. a single `data_batch_1.bin`) as a data set. */
export async function loadCifar10Batch(file: string, name = `cifar10:${path.basename(file)}`): Promise<ImageDataset> {
  const bytes = await readFileChecked(file, `a CIFAR-10 binary batch file`);
  checkRecordSize(bytes, file);
  return datasetOfBatches(name, [bytes], [file], [...CIFAR10_CLASS_NAMES]);
}

/** Class names from `batches.meta.txt` (one per line), or the standard ones if absent. */
async function readClassNames(dir: string): Promise<string[]> {
  const file = path.join(dir, 'batches.meta.txt');
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch {
    return [...CIFAR10_CLASS_NAMES];
  }
  const names = text
    .split(/\r?\n/)
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  if (names.length !== CIFAR10_NUM_CLASSES) {
    throw new DatasetError(
      `${file}: lists ${names.length} class names, expected ${CIFAR10_NUM_CLASSES} (one per line)`,
    );
  }
  return names;
}

/**
 * Loads the train split (data_batch_1..5.bin, 50,000 images) or the test split
 * (test_batch.bin, 10,000 images) from a `cifar-10-batches-bin` directory.
 */
export async function loadCifar10(dir: string, split: Split): Promise<ImageDataset> {
  if (split !== 'train' && split !== 'test') {
    throw new DatasetError(`cifar10: split must be "train" or "test", got ${JSON.stringify(split)}`);
  }
  const files = (split === 'train' ? CIFAR10_TRAIN_FILES : CIFAR10_TEST_FILES).map((f) => path.join(dir, f));
  const expected = `the CIFAR-10 binary version (${split === 'train' ? CIFAR10_TRAIN_FILES.join(', ') : CIFAR10_TEST_FILES[0]} in ${dir})`;
  const buffers: Buffer[] = [];
  for (const file of files) {
    const bytes = await readFileChecked(file, expected);
    checkRecordSize(bytes, file);
    buffers.push(bytes);
  }
  return datasetOfBatches(`cifar10:${split}`, buffers, files, await readClassNames(dir));
}

/** Writes a data set of 32x32x3 images as a CIFAR-10 binary batch (tests, exports). */
export function encodeCifar10Batch(ds: ImageDataset): Uint8Array {
  if (ds.height !== CIFAR10_SIDE || ds.width !== CIFAR10_SIDE || ds.channels !== 3) {
    throw new DatasetError(`${ds.name}: CIFAR-10 records are 32x32x3, got ${ds.height}x${ds.width}x${ds.channels}`);
  }
  const n = ds.labels.length;
  const out = new Uint8Array(n * CIFAR10_RECORD_BYTES);
  for (let r = 0; r < n; r++) {
    const base = r * CIFAR10_RECORD_BYTES;
    const y = ds.labels[r];
    if (y < 0 || y > 255) throw new DatasetError(`${ds.name}: label ${y} of record ${r} does not fit in a byte`);
    out[base] = y;
    const src = r * CIFAR10_PLANE * 3;
    for (let p = 0; p < CIFAR10_PLANE; p++) {
      out[base + 1 + p] = ds.images[src + p * 3];
      out[base + 1 + CIFAR10_PLANE + p] = ds.images[src + p * 3 + 1];
      out[base + 1 + 2 * CIFAR10_PLANE + p] = ds.images[src + p * 3 + 2];
    }
  }
  return out;
}
