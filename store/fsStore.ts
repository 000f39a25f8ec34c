import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { ArtifactNotFoundError, StoreError } from './errors';
import { assertRecordKey, assertRecordPrefix, assertSha256, casKey, isSha256, sha256Hex } from './keys';
import { artifactIntact, checkArtifactBytes } from './integrity';
import type { ArtifactRef, ArtifactStore } from './types';

function isErrno(err: unknown, ...codes: string[]): boolean {
  return typeof err === 'object' && err !== null && codes.includes((err as NodeJS.ErrnoException).code ?? '');
}

/**
 * Writes `data` to `target` atomically: a temporary file in the same directory, fsync, rename over
 * the target, fsync of the directory. A failure at any point leaves the previous target untouched
 * (a crash can leave a `.<name>.tmp-*` file behind; listings ignore those).
 */
export async function atomicWriteFile(target: string, data: Uint8Array | string): Promise<void> {
  const dir = path.dirname(target);
  await fsp.mkdir(dir, { recursive: true });
  const tmp = path.join(dir, `.${path.basename(target)}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`);
  let handle: fsp.FileHandle | undefined;
  try {
    handle = await fsp.open(tmp, 'wx', 0o644);
    await handle.writeFile(data);
    await handle.sync();
    await handle.close();
    handle = undefined;
    await fsp.rename(tmp, target);
  } catch (err) {
    if (handle) await handle.close().catch(() => undefined);
    await fsp.rm(tmp, { force: true }).catch(() => undefined);
    throw err;
  }
  await fsyncDir(dir);
}

async function fsyncDir(dir: string): Promise<void> {
  let handle: fsp.FileHandle | undefined;
  try {
    handle = await fsp.open(dir, 'r');
    await handle.sync();
  } catch (err) {
    // Some platforms/filesystems refuse fsync on directories; the rename itself is still atomic.
    if (!isErrno(err, 'EISDIR', 'EINVAL', 'EPERM', 'EACCES', 'ENOTSUP')) throw err;
  } finally {
    await handle?.close().catch(() => undefined);
  }
}

/** Content-addressed store in a local directory: <root>/cas/ab/<sha>, <root>/records/<key>.json. */
export class FileArtifactStore implements ArtifactStore {
  readonly location: string;
  readonly root: string;

  constructor(root: string) {
    this.root = path.resolve(root);
    this.location = pathToFileURL(this.root).href;
  }

  /** Filesystem path of the object with this sha256 (exposed for tests and tooling). */
  objectPath(sha: string): string {
    return path.join(this.root, ...casKey(assertSha256(sha)).split('/'));
  }

  private uri(sha: string): string {
    return pathToFileURL(this.objectPath(sha)).href;
  }

  private recordPath(key: string): string {
    return path.join(this.root, 'records', ...`${assertRecordKey(key)}.json`.split('/'));
  }

  async put(data: Uint8Array): Promise<ArtifactRef> {
    if (!(data instanceof Uint8Array)) throw new TypeError('put() expects a Uint8Array');
    const sha = sha256Hex(data);
    const ref: ArtifactRef = { uri: this.uri(sha), sha256: sha, bytes: data.byteLength };
    const file = this.objectPath(sha);
    if (await this.matches(file, ref)) return ref;
    // Missing or corrupt: (re)write the good bytes. Concurrent writers each rename a complete
    // temporary file into place, so readers only ever see a whole object.
    await atomicWriteFile(file, data);
    return ref;
  }

  private async matches(file: string, ref: ArtifactRef): Promise<boolean> {
    try {
      const stat = await fsp.stat(file);
      if (!stat.isFile() || stat.size !== ref.bytes) return false;
      return sha256Hex(await fsp.readFile(file)) === ref.sha256;
    } catch (err) {
      if (isErrno(err, 'ENOENT', 'ENOTDIR')) return false;
      throw err;
    }
  }

  async get(ref: ArtifactRef): Promise<Uint8Array> {
    const sha = assertSha256(ref?.sha256, 'ref.sha256');
    const file = this.objectPath(sha);
    let data: Buffer;
    try {
      data = await fsp.readFile(file);
    } catch (err) {
      if (isErrno(err, 'ENOENT', 'ENOTDIR', 'EISDIR')) throw new ArtifactNotFoundError(this.uri(sha), { cause: err });
      throw err;
    }
    checkArtifactBytes(this.uri(sha), ref, sha, data);
    return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  }

  async has(ref: ArtifactRef | string): Promise<boolean> {
    const sha = assertSha256(typeof ref === 'string' ? ref : ref?.sha256);
    try {
      return (await fsp.stat(this.objectPath(sha))).isFile();
    } catch (err) {
      if (isErrno(err, 'ENOENT', 'ENOTDIR')) return false;
      throw err;
    }
  }

  verify(ref: ArtifactRef): Promise<boolean> {
    return artifactIntact(this, ref);
  }

  async delete(sha256: string): Promise<void> {
    await fsp.rm(this.objectPath(sha256), { force: true });
  }

  async *list(): AsyncIterable<{ sha256: string; bytes: number }> {
    const casDir = path.join(this.root, 'cas');
    const shards = await readdirOrEmpty(casDir);
    for (const shard of shards.sort()) {
      if (!/^[0-9a-f]{2}$/.test(shard)) continue;
      for (const name of (await readdirOrEmpty(path.join(casDir, shard))).sort()) {
        if (!isSha256(name) || !name.startsWith(shard)) continue; // skips temporary files
        try {
          const stat = await fsp.stat(path.join(casDir, shard, name));
          if (stat.isFile()) yield { sha256: name, bytes: stat.size };
        } catch (err) {
          if (!isErrno(err, 'ENOENT')) throw err; // deleted while listing
        }
      }
    }
  }

  async putRecord(key: string, value: unknown): Promise<void> {
    const file = this.recordPath(key);
    const json = JSON.stringify(value);
    if (json === undefined) throw new StoreError(`record ${JSON.stringify(key)}: value is not JSON-serialisable`);
    await atomicWriteFile(file, json);
  }

  async getRecord<T = unknown>(key: string): Promise<T | undefined> {
    const file = this.recordPath(key);
    let text: string;
    try {
      text = await fsp.readFile(file, 'utf8');
    } catch (err) {
      if (isErrno(err, 'ENOENT', 'ENOTDIR', 'EISDIR')) return undefined;
      throw err;
    }
    try {
      return JSON.parse(text) as T;
    } catch (err) {
      throw new StoreError(`record ${JSON.stringify(key)} at ${file} is not valid JSON`, { cause: err });
    }
  }

  async listRecords(prefix: string): Promise<string[]> {
    assertRecordPrefix(prefix);
    const recordsDir = path.join(this.root, 'records');
    // Walk only the deepest directory the prefix fully names; filter the rest by string prefix.
    const dirPart = prefix.slice(0, prefix.lastIndexOf('/') + 1);
    const out: string[] = [];
    const walk = async (rel: string): Promise<void> => {
      const abs = path.join(recordsDir, ...rel.split('/').filter(Boolean));
      let entries: import('node:fs').Dirent[];
      try {
        entries = await fsp.readdir(abs, { withFileTypes: true });
      } catch (err) {
        if (isErrno(err, 'ENOENT', 'ENOTDIR')) return;
        throw err;
      }
      for (const entry of entries) {
        if (entry.name.startsWith('.')) continue; // temporary files
        if (entry.isDirectory()) await walk(`${rel}${entry.name}/`);
        else if (entry.isFile() && entry.name.endsWith('.json')) {
          const key = `${rel}${entry.name.slice(0, -'.json'.length)}`;
          if (key.startsWith(prefix)) out.push(key);
        }
      }
    };
    await walk(dirPart);
    return out.sort();
  }

  async deleteRecord(key: string): Promise<void> {
    await fsp.rm(this.recordPath(key), { force: true });
  }
}

async function readdirOrEmpty(dir: string): Promise<string[]> {
  try {
    return await fsp.readdir(dir);
  } catch (err) {
    if (isErrno(err, 'ENOENT', 'ENOTDIR')) return [];
    throw err;
  }
}
