/**
 * Image folders: one subfolder per class (torchvision's ImageFolder layout, GTSRB's
 * Final_Training/Images/00000..00042), or a flat folder with a CSV of file names and
 * class ids (GTSRB's test split). Every image is decoded and resized to size x size so
 * the result is one ImageDataset like any other loader's.
 *
 * Class labels: subfolders named by integers (00000, 7, ...) take that integer as the label,
 * so a split that lacks a class keeps the same numbering as the others; any other names are
 * sorted and numbered from 0, or numbered by their position in `classes` when given.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { DatasetError, type ImageDataset } from './dataset';
import { resizeImage } from './resize';

/** PPM/PGM are read here; the others go to TensorFlow's decoders (PNG, JPEG, BMP, GIF). */
export const IMAGE_EXTENSIONS = ['.png', '.jpg', '.jpeg', '.bmp', '.gif', '.ppm', '.pgm'];

export interface ImageFolderOptions {
  /** output height = width in pixels */
  size: number;
  channels: 1 | 3;
  /** a CSV naming each image and its class id; image paths in it are relative to the folder */
  labels?: string;
  /** class folder names in label order; folders outside it are an error */
  classes?: string[];
  /** number of classes when the folder or CSV does not show them all */
  numClasses?: number;
  /** names the data set in errors and records, e.g. "trainingSet" */
  field?: string;
  /** names the labels CSV in errors (default `<field>.labels`; the CLI's is "--labels") */
  labelsField?: string;
}

interface Entry {
  file: string;
  label: number;
  /** the CSV and row that named the file, for an error when it is not there */
  listedAt?: { csv: string; row: number; name: string };
}

const KNOWN_TYPES = IMAGE_EXTENSIONS.join(', ');

export async function loadImageFolder(dir: string, opts: ImageFolderOptions): Promise<ImageDataset> {
  const field = opts.field ?? 'imageFolder';
  const labelsField = opts.labelsField ?? `${field}.labels`;
  await requireDirectory(dir, field);
  const { entries, numClasses, classNames } = opts.labels ? await entriesFromCsv(dir, opts.labels, opts, field, labelsField) : await entriesFromSubfolders(dir, opts, field, labelsField);
  const per = opts.size * opts.size * opts.channels;
  const images = new Uint8Array(entries.length * per);
  const labels = new Int32Array(entries.length);
  for (let i = 0; i < entries.length; i++) {
    const { file, label, listedAt } = entries[i];
    if (listedAt && !(await fs.stat(file).catch(() => undefined))) {
      throw new DatasetError(`${labelsField}: ${listedAt.csv} row ${listedAt.row} names ${listedAt.name}, which is not in ${dir} (names are relative to that folder): fix the row or add the file`);
    }
    const decoded = await decodeImageFile(file, opts.channels, field);
    images.set(resizeImage(decoded.pixels, decoded.height, decoded.width, opts.channels, opts.size, opts.size), i * per);
    labels[i] = label;
  }
  return {
    name: `imageFolder:${path.basename(path.resolve(dir))}`,
    height: opts.size,
    width: opts.size,
    channels: opts.channels,
    numClasses,
    images,
    labels,
    ...(classNames ? { classNames } : {}),
  };
}

async function requireDirectory(dir: string, field: string): Promise<void> {
  let isDir = false;
  try {
    isDir = (await fs.stat(dir)).isDirectory();
  } catch (err) {
    throw new DatasetError(`${field}: folder ${dir} not found (${(err as NodeJS.ErrnoException).code ?? err}): check the path`);
  }
  if (!isDir) throw new DatasetError(`${field}: ${dir} is a file, expected a folder of images (one subfolder per class)`);
}

const isImage = (name: string) => IMAGE_EXTENSIONS.includes(path.extname(name).toLowerCase());
const byName = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

async function entriesFromSubfolders(dir: string, opts: ImageFolderOptions, field: string, labelsField: string) {
  const folders = (await fs.readdir(dir, { withFileTypes: true })).filter((d) => d.isDirectory() && !d.name.startsWith('.')).map((d) => d.name).sort(byName);
  if (folders.length === 0) {
    throw new DatasetError(
      `${field}: ${dir} has no class subfolders: put each class's images in a subfolder of their own (named by the class, or by its label number), or name a CSV of file names and class ids with ${labelsField}`,
    );
  }
  const numeric = !opts.classes && folders.every((f) => /^\d+$/.test(f));
  let labelOf: (folder: string) => number;
  let numClasses: number;
  let classNames: string[] | undefined;
  if (opts.classes) {
    const classes = opts.classes;
    const unknown = folders.filter((f) => !classes.includes(f));
    if (unknown.length) throw new DatasetError(`${field}: ${dir} has class folders not in classes: ${unknown.slice(0, 5).join(', ')}${unknown.length > 5 ? ', ...' : ''}`);
    labelOf = (f) => classes.indexOf(f);
    numClasses = classes.length;
    classNames = classes;
  } else if (numeric) {
    labelOf = (f) => Number.parseInt(f, 10);
    numClasses = Math.max(...folders.map(labelOf)) + 1;
  } else {
    labelOf = (f) => folders.indexOf(f);
    numClasses = folders.length;
    classNames = folders;
  }
  if (opts.numClasses !== undefined) {
    if (opts.numClasses < numClasses) throw new DatasetError(`${field}: numClasses is ${opts.numClasses} but ${dir} has class ${numClasses - 1} (${folders.find((f) => labelOf(f) === numClasses - 1)})`);
    numClasses = opts.numClasses;
  }
  const entries: Entry[] = [];
  const otherTypes = new Map<string, number>();
  for (const folder of folders) {
    const names = (await fs.readdir(path.join(dir, folder))).filter((f) => !f.startsWith('.'));
    for (const f of names.filter(isImage).sort(byName)) entries.push({ file: path.join(dir, folder, f), label: labelOf(folder) });
    for (const f of names.filter((f) => !isImage(f))) otherTypes.set(path.extname(f).toLowerCase() || f, (otherTypes.get(path.extname(f).toLowerCase() || f) ?? 0) + 1);
  }
  if (entries.length === 0) {
    // files of a type we do not read are skipped: with nothing else there, name them
    const others = [...otherTypes].map(([ext, n]) => `${n} ${ext}`).join(', ');
    throw new DatasetError(
      others
        ? `${field}: ${dir} holds no image of a type ntml reads (${KNOWN_TYPES}), only other files (${others}): convert them, e.g. to PNG`
        : `${field}: ${dir} holds no images: its class subfolders (${folders.slice(0, 5).join(', ')}${folders.length > 5 ? ', ...' : ''}) are empty; put each class's ${KNOWN_TYPES} files in its subfolder`,
    );
  }
  return { entries, numClasses, classNames };
}

const FILE_COLUMNS = ['filename', 'path', 'file', 'image'];
const CLASS_COLUMNS = ['classid', 'label', 'class'];

async function entriesFromCsv(dir: string, csvPath: string, opts: ImageFolderOptions, field: string, labelsField: string) {
  let text: string;
  try {
    text = await fs.readFile(csvPath, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new DatasetError(`${labelsField}: cannot read ${csvPath} (${code ?? err})${code === 'ENOENT' ? ': no such file, check the path' : ''}`);
  }
  const lines = text.split(/\r?\n/).filter((l) => l.trim() !== '');
  if (lines.length < 2) throw new DatasetError(`${labelsField}: ${csvPath} has no rows (expected a header such as "Filename,ClassId", then one row per image)`);
  // GTSRB's own CSVs use ";", Kaggle's copy of it ","
  const sep = lines[0].includes(';') ? ';' : ',';
  const header = lines[0].split(sep).map((h) => h.trim().toLowerCase());
  const fileCol = header.findIndex((h) => FILE_COLUMNS.includes(h));
  const classCol = header.findIndex((h) => CLASS_COLUMNS.includes(h));
  if (fileCol < 0 || classCol < 0) {
    throw new DatasetError(
      `${labelsField}: ${csvPath} header "${lines[0]}" needs a file column (${FILE_COLUMNS.join('/')}) and a class column (ClassId/label/class), e.g. "Filename,ClassId"`,
    );
  }
  const entries: Entry[] = [];
  for (let r = 1; r < lines.length; r++) {
    const cells = lines[r].split(sep);
    const name = cells[fileCol]?.trim();
    const rawLabel = cells[classCol]?.trim() ?? '';
    const label = Number(rawLabel);
    const row = `${labelsField}: ${csvPath} row ${r + 1} ("${lines[r]}")`;
    if (!name) throw new DatasetError(`${row} has no file name in its ${lines[0].split(sep)[fileCol].trim()} column: fix or remove the row`);
    if (rawLabel === '' || !Number.isInteger(label) || label < 0) {
      throw new DatasetError(`${row}: class id ${JSON.stringify(rawLabel)} is not a whole number >= 0: fix the row`);
    }
    if (path.isAbsolute(name) || name.split(/[\\/]/).includes('..')) {
      throw new DatasetError(`${labelsField}: ${csvPath} row ${r + 1} names ${name}; expected a path inside ${dir}`);
    }
    entries.push({ file: path.join(dir, name), label, listedAt: { csv: csvPath, row: r + 1, name } });
  }
  const seen = Math.max(...entries.map((e) => e.label)) + 1;
  if (opts.numClasses !== undefined && opts.numClasses < seen) {
    throw new DatasetError(`${labelsField}: ${csvPath} has class id ${seen - 1}, but numClasses is ${opts.numClasses}`);
  }
  return { entries, numClasses: opts.numClasses ?? seen, classNames: undefined };
}

export interface DecodedImage {
  height: number;
  width: number;
  /** HWC, `channels` per pixel */
  pixels: Uint8Array;
}

export async function decodeImageFile(file: string, channels: 1 | 3, field = 'image'): Promise<DecodedImage> {
  let bytes: Buffer;
  try {
    bytes = await fs.readFile(file);
  } catch (err) {
    throw new DatasetError(`${field}: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? err})`);
  }
  const ext = path.extname(file).toLowerCase();
  // TensorFlow would guess from the bytes and fail with its own wording: name the type instead
  if (!IMAGE_EXTENSIONS.includes(ext)) throw new DatasetError(`${field}: ${file}: unknown image type "${ext || path.basename(file)}" (ntml reads ${KNOWN_TYPES}): convert it, e.g. to PNG`);
  try {
    return ext === '.ppm' || ext === '.pgm' ? toChannels(decodeNetpbm(bytes), channels) : decodeWithTensorflow(bytes, channels);
  } catch (err) {
    throw new DatasetError(`${field}: ${file} is not a readable image (${(err as Error).message}): save it again as PNG or JPEG, or remove it`);
  }
}

function decodeWithTensorflow(bytes: Uint8Array, channels: 1 | 3): DecodedImage {
  // loaded on first use: the rest of the data layer does not need the native backend
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const { tf } = require('../tf') as typeof import('../tf');
  const img = tf.node.decodeImage(bytes, channels, 'int32', false) as import('@tensorflow/tfjs-node').Tensor3D;
  try {
    const [height, width] = img.shape;
    return { height, width, pixels: Uint8Array.from(img.dataSync()) };
  } finally {
    img.dispose();
  }
}

/** Binary (P5/P6) and plain (P2/P3) Netpbm, maxval up to 65535, scaled to 0..255. */
export function decodeNetpbm(bytes: Uint8Array): DecodedImage & { channels: 1 | 3 } {
  let pos = 0;
  const token = (): string => {
    for (;;) {
      while (pos < bytes.length && /\s/.test(String.fromCharCode(bytes[pos]))) pos++;
      if (bytes[pos] !== 0x23) break; // '#' comment to end of line
      while (pos < bytes.length && bytes[pos] !== 0x0a) pos++;
    }
    const start = pos;
    while (pos < bytes.length && !/\s/.test(String.fromCharCode(bytes[pos]))) pos++;
    return Buffer.from(bytes.subarray(start, pos)).toString('latin1');
  };
  const magic = token();
  if (!['P2', 'P3', 'P5', 'P6'].includes(magic)) throw new Error(`Netpbm magic ${JSON.stringify(magic.slice(0, 2))}, expected P2, P3, P5 or P6`);
  const width = Number(token());
  const height = Number(token());
  const maxval = Number(token());
  if (!(Number.isInteger(width) && width > 0 && Number.isInteger(height) && height > 0)) throw new Error(`bad size ${width}x${height}`);
  if (!(Number.isInteger(maxval) && maxval > 0 && maxval < 65536)) throw new Error(`bad maxval ${maxval}`);
  const channels: 1 | 3 = magic === 'P3' || magic === 'P6' ? 3 : 1;
  const count = width * height * channels;
  const pixels = new Uint8Array(count);
  const scale = (v: number) => Math.round((v * 255) / maxval);
  if (magic === 'P5' || magic === 'P6') {
    pos++; // the single whitespace after maxval
    const wide = maxval > 255;
    const need = count * (wide ? 2 : 1);
    if (bytes.length - pos < need) throw new Error(`truncated: ${bytes.length - pos} pixel bytes, expected ${need}`);
    for (let i = 0; i < count; i++) pixels[i] = scale(wide ? (bytes[pos + 2 * i] << 8) | bytes[pos + 2 * i + 1] : bytes[pos + i]);
  } else {
    for (let i = 0; i < count; i++) {
      const v = Number(token());
      if (!Number.isInteger(v) || v < 0 || v > maxval) throw new Error(`pixel value ${i} is ${JSON.stringify(v)}, expected 0..${maxval}`);
      pixels[i] = scale(v);
    }
  }
  return { height, width, channels, pixels };
}

function toChannels(img: DecodedImage & { channels: 1 | 3 }, channels: 1 | 3): DecodedImage {
  if (img.channels === channels) return img;
  const n = img.height * img.width;
  const out = new Uint8Array(n * channels);
  if (channels === 3) {
    for (let p = 0; p < n; p++) out[3 * p] = out[3 * p + 1] = out[3 * p + 2] = img.pixels[p];
  } else {
    // ITU-R 601 luma, as TensorFlow's decoders and PIL's "L" convert
    for (let p = 0; p < n; p++) out[p] = Math.round(0.299 * img.pixels[3 * p] + 0.587 * img.pixels[3 * p + 1] + 0.114 * img.pixels[3 * p + 2]);
  }
  return { height: img.height, width: img.width, pixels: out };
}
