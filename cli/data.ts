/**
 * `ntml data pack|inspect`: turn a folder of images into one ntml data set file (.ntds), which
 * workers can read from S3 (a folder cannot be), and show what a data set holds before a run
 * depends on it. Loads TensorFlow only to decode PNG/JPEG images.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { commandUsage, type CommandSpec, type ParsedArgs } from './args';
import { UsageError, UserError } from './errors';
import { DatasetFile } from '../schemas/purify';

interface Io {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
}

const folderOptions = [
  { name: 'size', value: 'N', help: 'resize every image to N x N pixels (default 32)' },
  { name: 'channels', value: '1|3', help: 'grey or RGB (default 3)' },
  { name: 'labels', value: 'CSV', help: 'a flat folder: file column (Filename/Path) and class column (ClassId/label)' },
  { name: 'classes', value: 'A,B,...', help: 'class folder names in label order (default: integer names are labels, others sorted)' },
  { name: 'num-classes', value: 'N', help: 'number of classes when the folder lacks some' },
];

export const dataPack: CommandSpec = {
  name: 'data pack',
  brief: 'pack a folder of images (one subfolder per class) into an .ntds data set file',
  summary: 'Decode, resize and pack an image folder into one ntml data set file (readable from S3 by the workers).',
  positionals: [{ name: 'DIR', help: 'the image folder' }],
  options: [{ name: 'out', value: 'FILE', help: 'the .ntds file to write' }, ...folderOptions, { name: 'force', help: 'replace FILE if it exists' }],
  details: `DIR holds one subfolder per class (named by the class, or by its label number) of .png, .jpg, .jpeg,
.bmp, .gif, .ppm or .pgm files; or it is a flat folder and --labels names a CSV of file names and
class ids. The file is written whole or not at all (a temporary file renamed into place); an existing
FILE is kept unless --force.`,
};

export const dataInspect: CommandSpec = {
  name: 'data inspect',
  brief: 'count, image shape and per-class counts of a data set (.ntds, CIFAR-10 batch or image folder)',
  summary: 'Show what a data set holds: images, shape, classes and how many images each class has.',
  positionals: [{ name: 'PATH', help: 'an .ntds file, a CIFAR-10 .bin batch, or an image folder' }],
  options: folderOptions,
  details: 'An image folder is read as "ntml data pack" reads it (the same options), without writing anything.',
};

const FLAG_OF: Record<string, string> = { dir: 'DIR', labels: '--labels', size: '--size', channels: '--channels', classes: '--classes', numClasses: '--num-classes' };

/** The imageFolder data set description the options give, validated by the config schema. */
function folderSpec(dir: string, args: ParsedArgs): Extract<DatasetFile, { format: 'imageFolder' }> {
  const o = args.options;
  const num = (name: string) => {
    const v = o[name];
    if (v === undefined) return undefined;
    if (v === true || !/^\d+$/.test(v)) throw new UsageError(`--${name} needs a whole number, got ${v === true ? 'nothing' : JSON.stringify(v)}`);
    return Number(v);
  };
  const text = (name: string) => {
    const v = o[name];
    if (v === true) throw new UsageError(`--${name} needs a value`);
    return v;
  };
  const raw = {
    format: 'imageFolder',
    dir,
    labels: text('labels'),
    size: num('size'),
    channels: num('channels'),
    classes: text('classes')?.split(',').map((c) => c.trim()),
    numClasses: num('num-classes'),
  };
  const parsed = DatasetFile.safeParse(Object.fromEntries(Object.entries(raw).filter(([, v]) => v !== undefined)));
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const field = String(issue.path[0] ?? '');
    throw new UsageError(`${FLAG_OF[field] ?? field}: ${issue.message}`);
  }
  return parsed.data as Extract<DatasetFile, { format: 'imageFolder' }>;
}

const READS = 'an .ntds file (ntml data pack writes one), a CIFAR-10 .bin batch or an image folder';

/**
 * The data set at `target`; `argument` names it in errors (the command's DIR or PATH), and the
 * folder options by their flags.
 */
async function loadAny(target: string, args: ParsedArgs, argument: string) {
  const { DatasetError } = await import('../core/data/dataset');
  const stat = await fs.stat(target).catch(() => undefined);
  if (!stat) throw new UserError(`${argument}: ${target}: no such file or folder (check the path; ${argument} is ${READS})`, 2);
  try {
    if (stat.isDirectory()) {
      const spec = folderSpec(target, args);
      const { loadImageFolder } = await import('../core/data/imageFolder');
      const { size, channels, labels, classes, numClasses } = spec;
      return await loadImageFolder(target, { size, channels, labels, classes, numClasses, field: argument, labelsField: '--labels' });
    }
    if (target.endsWith('.bin')) return (await import('../core/data/cifar10')).loadCifar10Batch(target);
    const bytes = await fs.readFile(target).catch((err: NodeJS.ErrnoException) => {
      throw new UserError(`${argument}: cannot read ${target} (${err.code ?? err.message}): check that it is a file you may read`, 2);
    });
    const { decodeDataset } = await import('../core/data/codec');
    try {
      return decodeDataset(new Uint8Array(bytes), target);
    } catch (err) {
      if (!(err instanceof DatasetError)) throw err;
      // a file of another kind: say what the command reads; else an .ntds file damaged on its way
      if (/too short for an ntml dataset|not an ntml dataset file/.test(err.message)) throw new UserError(`${err.message}; ${argument} must be ${READS}`, 2);
      throw new UserError(`${err.message}: the file is damaged or cut short; copy it again, or pack it again from its images`, 2);
    }
  } catch (err) {
    if (err instanceof DatasetError) throw new UserError(err.message, 2);
    throw err;
  }
}

async function pack(args: ParsedArgs, io: Io): Promise<number> {
  const [dir] = args.positionals;
  const out = args.options.out;
  if (typeof out !== 'string') throw new UsageError('--out FILE is required', commandUsage(dataPack, true));
  if (!args.options.force && (await fs.stat(out).catch(() => undefined))) throw new UserError(`${out} exists; pass --force to replace it`, 2);
  const stat = await fs.stat(dir).catch(() => undefined);
  if (!stat) throw new UserError(`DIR: ${dir}: no such folder (check the path; pack takes a folder of images, one subfolder per class)`, 2);
  if (!stat.isDirectory()) throw new UserError(`DIR: ${dir}: not a folder; pack takes a folder of images (to look into a data set file: ntml data inspect ${dir})`, 2);
  const ds = await loadAny(dir, args, 'DIR');
  const { encodeDataset } = await import('../core/data/codec');
  const labels = args.options.labels;
  const bytes = encodeDataset(ds, { packedFrom: path.basename(path.resolve(dir)), size: ds.height, ...(typeof labels === 'string' ? { labels: path.basename(labels) } : {}) });
  await fs.mkdir(path.dirname(path.resolve(out)), { recursive: true });
  const tmp = `${out}.tmp-${process.pid}`;
  try {
    await fs.writeFile(tmp, bytes);
    await fs.rename(tmp, out);
  } finally {
    await fs.rm(tmp, { force: true });
  }
  const sha = createHash('sha256').update(bytes).digest('hex');
  io.stdout.write(`packed ${ds.labels.length} images (${ds.height}x${ds.width}x${ds.channels}, ${ds.numClasses} classes) from ${dir} into ${out} (${(bytes.length / 2 ** 20).toFixed(1)} MiB, sha256 ${sha.slice(0, 16)}...)\n`);
  io.stdout.write(`use it as: { format: ntml, location: ${out} }\n`);
  return 0;
}

async function inspect(args: ParsedArgs, io: Io): Promise<number> {
  const [target] = args.positionals;
  const ds = await loadAny(target, args, 'PATH');
  const counts = new Array<number>(ds.numClasses).fill(0);
  for (const y of ds.labels) counts[y]++;
  io.stdout.write(`${target}: ${ds.labels.length} images, ${ds.height}x${ds.width}x${ds.channels}, ${ds.numClasses} classes\n`);
  const empty = counts.filter((c) => c === 0).length;
  for (let k = 0; k < ds.numClasses; k++) {
    if (counts[k] === 0) continue;
    io.stdout.write(`  ${String(k).padStart(3)} ${(ds.classNames?.[k] ?? '').padEnd(16)} ${counts[k]}\n`);
  }
  if (empty) io.stdout.write(`  (${empty} classes without images)\n`);
  return 0;
}

/** `ntml data pack DIR --out FILE`. */
export const dataPackCmd = (args: ParsedArgs, io: Io) => pack(args, io);
/** `ntml data inspect PATH`. */
export const dataInspectCmd = (args: ParsedArgs, io: Io) => inspect(args, io);
