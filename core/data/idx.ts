/**
 * IDX files (MNIST, Fashion-MNIST), raw or gzip-compressed.
 *
 * Header: 4-byte magic 0x00 0x00 <type> <ndims>, then ndims big-endian uint32 sizes.
 * Images: 0x00000803 (ubyte, 3 dims: count, rows, cols). Labels: 0x00000801 (ubyte, 1 dim).
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import * as zlib from 'node:zlib';
import { DatasetError, type ImageDataset } from './dataset';

const gunzip = promisify(zlib.gunzip);

export const IDX_IMAGES_MAGIC = 0x00000803;
export const IDX_LABELS_MAGIC = 0x00000801;

/**
 * Where the Debian/Ubuntu package `dataset-fashion-mnist` installs the four gzip files
 * (`apt-get install dataset-fashion-mnist`). Only a default: every loader takes a directory.
 */
export const DEFAULT_FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist';

export const FASHION_MNIST_CLASS_NAMES = [
  'T-shirt/top',
  'Trouser',
  'Pullover',
  'Dress',
  'Coat',
  'Sandal',
  'Shirt',
  'Sneaker',
  'Bag',
  'Ankle boot',
];

export interface IdxOptions {
  /** Labels must lie in [0, numClasses). Default 10. */
  numClasses?: number;
  /** Data set name. Default: "idx:<images file name>". */
  name?: string;
  classNames?: string[];
}

function hex(n: number): string {
  return '0x' + (n >>> 0).toString(16).padStart(8, '0');
}

/** Reads a file, transparently gunzipping it when it starts with the gzip magic 1f 8b. */
export async function readMaybeGzip(file: string, expected: string): Promise<Uint8Array> {
  let raw: Buffer;
  try {
    raw = await fs.readFile(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new DatasetError(`${file}: file not found; expected ${expected}`);
    throw new DatasetError(`${file}: cannot be read (${(err as Error).message}); expected ${expected}`);
  }
  if (raw.length >= 2 && raw[0] === 0x1f && raw[1] === 0x8b) {
    try {
      return await gunzip(raw);
    } catch (err) {
      throw new DatasetError(
        `${file}: starts with the gzip magic but does not decompress (${(err as Error).message}); the file is truncated or corrupt`,
      );
    }
  }
  return raw;
}

interface IdxHeader {
  dims: number[];
  dataOffset: number;
}

function parseIdxHeader(bytes: Uint8Array, file: string, magic: number, what: string): IdxHeader {
  const ndims = magic & 0xff;
  const headerBytes = 4 + 4 * ndims;
  if (bytes.length < 4) {
    throw new DatasetError(`${file}: only ${bytes.length} bytes; expected an IDX ${what} file starting with magic ${hex(magic)}`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const got = view.getUint32(0, false);
  if (got !== magic) {
    throw new DatasetError(`${file}: magic number ${hex(got)}, expected ${hex(magic)} (IDX ${what}, unsigned bytes, ${ndims} dimension${ndims > 1 ? 's' : ''})`);
  }
  if (bytes.length < headerBytes) {
    throw new DatasetError(`${file}: truncated IDX header: ${bytes.length} bytes, expected at least ${headerBytes}`);
  }
  const dims: number[] = [];
  for (let d = 0; d < ndims; d++) dims.push(view.getUint32(4 + 4 * d, false));
  const payload = dims.reduce((a, b) => a * b, 1);
  const available = bytes.length - headerBytes;
  if (available < payload) {
    throw new DatasetError(
      `${file}: truncated: header declares ${dims.join('x')} = ${payload} data bytes, only ${available} present`,
    );
  }
  if (available > payload) {
    throw new DatasetError(
      `${file}: ${available - payload} unexpected trailing bytes after the ${dims.join('x')} = ${payload} data bytes the header declares`,
    );
  }
  return { dims, dataOffset: headerBytes };
}

/** Loads an IDX images file and its IDX labels file as a grayscale (1-channel) data set. */
export async function loadIdxPair(imagesPath: string, labelsPath: string, opts: IdxOptions = {}): Promise<ImageDataset> {
  const numClasses = opts.numClasses ?? 10;
  if (!Number.isInteger(numClasses) || numClasses < 1 || numClasses > 256) {
    throw new DatasetError(`numClasses must be an integer in [1, 256], got ${numClasses}`);
  }
  const imgBytes = await readMaybeGzip(imagesPath, `an IDX images file (magic ${hex(IDX_IMAGES_MAGIC)})`);
  const lblBytes = await readMaybeGzip(labelsPath, `an IDX labels file (magic ${hex(IDX_LABELS_MAGIC)})`);
  const img = parseIdxHeader(imgBytes, imagesPath, IDX_IMAGES_MAGIC, 'images');
  const lbl = parseIdxHeader(lblBytes, labelsPath, IDX_LABELS_MAGIC, 'labels');
  const [count, rows, cols] = img.dims;
  if (rows === 0 || cols === 0) {
    throw new DatasetError(`${imagesPath}: image size ${rows}x${cols}, expected positive dimensions`);
  }
  if (count === 0) throw new DatasetError(`${imagesPath}: holds 0 images, expected at least one`);
  if (lbl.dims[0] !== count) {
    throw new DatasetError(
      `${labelsPath}: holds ${lbl.dims[0]} labels but ${imagesPath} holds ${count} images; expected the same record count`,
    );
  }
  const labels = new Int32Array(count);
  for (let i = 0; i < count; i++) {
    const y = lblBytes[lbl.dataOffset + i];
    if (y >= numClasses) {
      throw new DatasetError(`${labelsPath}: record ${i} has label ${y}, expected a label in [0, ${numClasses - 1}]`);
    }
    labels[i] = y;
  }
  const images = new Uint8Array(imgBytes.subarray(img.dataOffset, img.dataOffset + count * rows * cols));
  const ds: ImageDataset = {
    name: opts.name ?? `idx:${path.basename(imagesPath)}`,
    height: rows,
    width: cols,
    channels: 1,
    numClasses,
    images,
    labels,
  };
  if (opts.classNames) {
    if (opts.classNames.length !== numClasses) {
      throw new DatasetError(`classNames lists ${opts.classNames.length} names, expected ${numClasses}`);
    }
    ds.classNames = [...opts.classNames];
  }
  return ds;
}

async function exists(file: string): Promise<boolean> {
  try {
    await fs.access(file);
    return true;
  } catch {
    return false;
  }
}

/** First existing file among the usual spellings of an IDX file name (raw, .gz, dot variant). */
async function findIdxFile(dir: string, stem: string, kind: 'idx3' | 'idx1'): Promise<string> {
  const candidates = [`${stem}-${kind}-ubyte`, `${stem}-${kind}-ubyte.gz`, `${stem}.${kind}-ubyte`, `${stem}.${kind}-ubyte.gz`];
  for (const c of candidates) {
    const file = path.join(dir, c);
    if (await exists(file)) return file;
  }
  throw new DatasetError(`${path.join(dir, candidates[0])}: file not found; expected one of ${candidates.join(', ')} in ${dir}`);
}

/**
 * Loads an MNIST-layout directory: train-images-idx3-ubyte(.gz), train-labels-idx1-ubyte(.gz),
 * t10k-images-idx3-ubyte(.gz), t10k-labels-idx1-ubyte(.gz).
 */
export async function loadIdxDirectory(
  dir: string,
  split: 'train' | 'test',
  opts: IdxOptions & { datasetName: string },
): Promise<ImageDataset> {
  if (split !== 'train' && split !== 'test') {
    throw new DatasetError(`${opts.datasetName}: split must be "train" or "test", got ${JSON.stringify(split)}`);
  }
  const stem = split === 'train' ? 'train' : 't10k';
  const images = await findIdxFile(dir, `${stem}-images`, 'idx3');
  const labels = await findIdxFile(dir, `${stem}-labels`, 'idx1');
  return loadIdxPair(images, labels, { ...opts, name: opts.name ?? `${opts.datasetName}:${split}` });
}

/** Fashion-MNIST (28x28 grayscale, 10 classes) from `dir` (default DEFAULT_FASHION_MNIST_DIR). */
export function loadFashionMnist(dir: string = DEFAULT_FASHION_MNIST_DIR, split: 'train' | 'test' = 'train'): Promise<ImageDataset> {
  return loadIdxDirectory(dir, split, { datasetName: 'fashion-mnist', classNames: FASHION_MNIST_CLASS_NAMES });
}

/** MNIST digits from an MNIST-layout directory. */
export function loadMnist(dir: string, split: 'train' | 'test' = 'train'): Promise<ImageDataset> {
  return loadIdxDirectory(dir, split, { datasetName: 'mnist', classNames: ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'] });
}

/**
 * Zero-pads each image (centred) to 32x32 and replicates a single channel to RGB, e.g.
 * Fashion-MNIST 28x28x1 -> 32x32x3 for use as the POOD set next to CIFAR-10.
 * A 32x32x3 data set is returned as a copy.
 */
export function toRgb32(ds: ImageDataset, side = 32): ImageDataset {
  if (ds.height > side || ds.width > side) {
    throw new DatasetError(`${ds.name}: images are ${ds.height}x${ds.width}, larger than the ${side}x${side} target; cannot pad`);
  }
  if (ds.channels !== 1 && ds.channels !== 3) {
    throw new DatasetError(`${ds.name}: channels must be 1 or 3, got ${ds.channels}`);
  }
  const n = ds.labels.length;
  const top = Math.floor((side - ds.height) / 2);
  const left = Math.floor((side - ds.width) / 2);
  const inPer = ds.height * ds.width * ds.channels;
  const outPer = side * side * 3;
  const images = new Uint8Array(n * outPer);
  for (let i = 0; i < n; i++) {
    const src = i * inPer;
    const dst = i * outPer;
    for (let y = 0; y < ds.height; y++) {
      for (let x = 0; x < ds.width; x++) {
        const o = dst + ((y + top) * side + (x + left)) * 3;
        if (ds.channels === 1) {
          const v = ds.images[src + y * ds.width + x];
          images[o] = v;
          images[o + 1] = v;
          images[o + 2] = v;
        } else {
          const s = src + (y * ds.width + x) * 3;
          images[o] = ds.images[s];
          images[o + 1] = ds.images[s + 1];
          images[o + 2] = ds.images[s + 2];
        }
      }
    }
  }
  return {
    ...ds,
    name: `${ds.name}:rgb${side}`,
    height: side,
    width: side,
    channels: 3,
    images,
    labels: new Int32Array(ds.labels),
    classNames: ds.classNames ? [...ds.classNames] : undefined,
  };
}

/** Builds IDX bytes (raw) for an images or labels payload: tests and exports. */
export function encodeIdx(magic: number, dims: number[], data: Uint8Array): Uint8Array {
  const header = 4 + 4 * dims.length;
  const out = new Uint8Array(header + data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, magic, false);
  dims.forEach((d, k) => view.setUint32(4 + 4 * k, d, false));
  out.set(data, header);
  return out;
}
