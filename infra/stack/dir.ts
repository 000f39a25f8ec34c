/**
 * Where the local stack keeps its state (servers' data, the S3 store, stack.json): the one
 * place that reads NTML_STACK_DIR. Set it (or pass --stack-dir) to a folder outside the
 * checkout, and a machine that outlives the checkout keeps its Temporal history and its store.
 */
import * as path from 'node:path';

/** The default when nothing is set: .ntml/stack under the current directory. */
export const DEFAULT_STACK_DIR = path.join('.ntml', 'stack');

/** NTML_STACK_DIR (made absolute), else DEFAULT_STACK_DIR. */
export function stackDirFromEnv(env: NodeJS.ProcessEnv = process.env): string {
  const dir = env.NTML_STACK_DIR?.trim();
  return dir ? path.resolve(dir) : DEFAULT_STACK_DIR;
}
