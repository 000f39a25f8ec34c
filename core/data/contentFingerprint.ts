/**
 * A data source's content identity: the sha256 of the bytes a loader reads, independent of
 * where the folder lies. Sweep cell ids hash it in place of the folder's path, so a bench/state
 * bundle's cells are found again on a machine whose CIFAR-10 copy sits elsewhere.
 *
 * Why the raw files and not the decoded arrays or prepareData's output digest: the files are
 * there before any stage runs (a cell id is needed before its first stage), reading them costs
 * about a second for CIFAR-10's 180 MB, and one changed byte anywhere in them changes the
 * digest. Each file's digest is memoised by (path, size, mtime), so the sweep workflow's repeats
 * (every continue-as-new, every resume in one worker process) cost a stat per file.
 */
import { createHash } from 'node:crypto';
import { createReadStream, promises as fs } from 'node:fs';
import path from 'node:path';
import { CIFAR10_TEST_FILES, CIFAR10_TRAIN_FILES } from './cifar10';
import { dataLocations } from '../../schemas/sweep';

const memo = new Map<string, { size: number; mtimeMs: number; sha256: string }>();

async function fileSha256(file: string): Promise<string> {
  const st = await fs.stat(file);
  const hit = memo.get(file);
  if (hit && hit.size === st.size && hit.mtimeMs === st.mtimeMs) return hit.sha256;
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  const sha256 = hash.digest('hex');
  memo.set(file, { size: st.size, mtimeMs: st.mtimeMs, sha256 });
  return sha256;
}

/** Every regular file under `dir`, relative paths in a fixed (sorted) order. */
async function filesUnder(dir: string, prefix = ''): Promise<string[]> {
  const entries = await fs.readdir(path.join(dir, prefix), { withFileTypes: true });
  const out: string[] = [];
  for (const e of entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    const rel = prefix ? `${prefix}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...(await filesUnder(dir, rel)));
    else if (e.isFile()) out.push(rel);
  }
  return out;
}

/** sha256 over (relative name, file sha256) pairs: renaming or editing any file changes it, moving the folder does not. */
async function filesDigest(root: string, relFiles: string[]): Promise<string> {
  const hash = createHash('sha256');
  for (const rel of relFiles) hash.update(`${rel}\0${await fileSha256(path.join(root, rel))}\n`);
  return hash.digest('hex');
}

const stripFileScheme = (p: string) => (p.startsWith('file://') ? decodeURIComponent(p.slice('file://'.length)) : p);

/**
 * `sha256:<hex>` of the files the `data` config's loader reads, or undefined when it names no
 * local location (synthetic data, Fashion-MNIST's default folder) or a location is not there:
 * such a cell keeps hashing its config as written, and fails in prepareData with the loader's
 * own error naming the field.
 * CIFAR-10: the six batch files only (the folder's readme and meta files do not change the
 * images). Other formats (GTSRB, Fashion-MNIST, image folders and their labels CSVs): every
 * file under each folder.
 */
export async function dataContentFingerprint(data: unknown): Promise<string | undefined> {
  const locations = dataLocations(data);
  if (!locations.length) return undefined;
  const cifar = (data as { format?: unknown }).format === 'cifar10';
  try {
    const parts: string[] = [];
    for (const { field, location } of locations) {
      const p = stripFileScheme(location);
      const digest = cifar
        ? await filesDigest(p, [...CIFAR10_TRAIN_FILES, ...CIFAR10_TEST_FILES])
        : (await fs.stat(p)).isDirectory()
          ? await filesDigest(p, await filesUnder(p))
          : await fileSha256(p);
      parts.push(`${field}=${digest}`);
    }
    return `sha256:${createHash('sha256').update(parts.join('\n')).digest('hex')}`;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw err;
  }
}
