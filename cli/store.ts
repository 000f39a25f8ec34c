/** The artifact store a CLI command reads: from the environment, else from the local stack. */
import type { ArtifactStore } from '../store';

interface Io {
  stderr: NodeJS.WritableStream;
}

/** Store settings: the environment, else the running local stack's (S3 started alone if it is down). */
export async function withStore<T>(io: Io, f: (store: ArtifactStore) => Promise<T>): Promise<T> {
  const { storeFromEnv } = await import('../store');
  if (process.env.NTML_STORE) return f(storeFromEnv());
  const { recordedStack, adoptStackEnv, stackDir } = await import('./temporal');
  const running = recordedStack();
  if (running) {
    adoptStackEnv(running.env);
    return f(storeFromEnv());
  }
  const { startLocalStack } = await import('../infra/stack');
  io.stderr.write(`starting the local S3 server in ${stackDir()} to read the store ...\n`);
  const stack = await startLocalStack({ dir: stackDir(), temporal: false, log: () => undefined });
  try {
    adoptStackEnv(stack.env);
    return await f(storeFromEnv());
  } finally {
    await stack.stop();
  }
}
