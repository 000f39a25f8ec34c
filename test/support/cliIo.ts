/** What the CLI handler tests share: an Io that keeps what a handler prints, and a store picked by NTML_STORE. */
import { Writable } from 'node:stream';
import type { Io } from '../../cli/purify';

/** An Io whose stdout and stderr go to one buffer (`printed()`), never aborted. */
export function captureIo(): { io: Io; printed: () => string } {
  let text = '';
  const sink = new Writable({
    write(chunk, _enc, cb) {
      text += chunk;
      cb();
    },
  });
  return { io: { stdout: sink, stderr: sink, signal: new AbortController().signal } as unknown as Io, printed: () => text };
}

/** Runs a CLI handler against the store at `location` (as NTML_STORE), restoring the variable after. */
export async function withStoreEnv<T>(location: string, f: () => Promise<T>): Promise<T> {
  const saved = process.env.NTML_STORE;
  process.env.NTML_STORE = location;
  try {
    return await f();
  } finally {
    if (saved === undefined) delete process.env.NTML_STORE;
    else process.env.NTML_STORE = saved;
  }
}
