import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';

/** The ntml checkout: the nearest directory above `from` holding a package.json named "ntml". */
export function findRepoRoot(from: string = __dirname): string | undefined {
  let dir = path.resolve(from);
  for (;;) {
    const pkg = path.join(dir, 'package.json');
    if (existsSync(pkg)) {
      try {
        if ((JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'ntml') return dir;
      } catch {
        // unreadable package.json: keep looking upward
      }
    }
    const parent = path.dirname(dir);
    if (parent === dir) return undefined;
    dir = parent;
  }
}
