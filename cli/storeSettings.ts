/**
 * The store settings a command inherits from its environment, checked before the command
 * does anything: a bad NTML_STORE would otherwise surface minutes later inside an activity
 * (retried, then reported as an S3 "Bad Request" that names no setting).
 */
import { UsageError } from './errors';

export async function checkStoreSettings(env: NodeJS.ProcessEnv = process.env): Promise<void> {
  const store = env.NTML_STORE;
  // an empty NTML_STORE means "the default store", as storeFromEnv reads it
  if (store !== undefined && store.trim() !== '') {
    const { storeLocationProblem } = await import('../store/uri');
    const problem = storeLocationProblem(store.trim());
    if (problem) throw new UsageError(`NTML_STORE=${JSON.stringify(store)}: ${problem}`);
  }
  const endpoint = env.NTML_S3_ENDPOINT;
  if (endpoint) {
    let url: URL | undefined;
    try {
      url = new URL(endpoint);
    } catch {
      url = undefined;
    }
    if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:')) {
      throw new UsageError(`NTML_S3_ENDPOINT=${JSON.stringify(endpoint)}: expected an http:// or https:// URL, e.g. http://127.0.0.1:9000`);
    }
  }
}
