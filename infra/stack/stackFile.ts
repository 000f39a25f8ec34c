/** <dir>/stack.json: where a local stack's servers listen and which processes they are. */
import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { atomicWriteFile } from '../../store/fsStore';
import type { StackFile } from './index';

export function stackFilePath(dir: string): string {
  return path.join(path.resolve(dir), 'stack.json');
}

export function readStackFile(dir: string): StackFile | undefined {
  const file = stackFilePath(dir);
  if (!existsSync(file)) return undefined;
  return JSON.parse(readFileSync(file, 'utf8')) as StackFile;
}

export async function writeStackFile(info: StackFile): Promise<void> {
  await atomicWriteFile(stackFilePath(info.dir), `${JSON.stringify(info, null, 2)}\n`);
}
