/**
 * What a finished run leaves on disk: the Markdown and JSON reports from the artifact store and
 * the purified model exported as a tfjs layers model (model.json + weights.bin).
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { ArtifactNotFoundError, storeFromEnv, type ArtifactRef, type ArtifactStore } from '../store/index';
import type { PurifyOutcome } from '../workflows/contract';
import { UserError } from './errors';

export interface WrittenOutputs {
  markdown: string;
  dir: string;
  reportMd: string;
  reportJson: string;
  modelJson: string;
  weightsBin: string;
}

async function fetch(store: ArtifactStore, ref: ArtifactRef, what: string): Promise<Uint8Array> {
  try {
    return await store.get(ref);
  } catch (err) {
    if (err instanceof ArtifactNotFoundError) {
      throw new UserError(
        `the ${what} (${ref.uri}) is not in the store ${store.location}: set NTML_STORE (and NTML_S3_ENDPOINT, ` +
          `NTML_S3_CREDENTIALS_FILE) to the store the workers use`,
      );
    }
    throw new UserError(`cannot fetch the ${what} from ${store.location}: ${(err as Error).message.split('\n')[0]}`);
  }
}

export async function writeOutputs(outcome: PurifyOutcome, opts: { dir: string; modelDir?: string }): Promise<WrittenOutputs> {
  let store: ArtifactStore;
  try {
    store = storeFromEnv();
  } catch (err) {
    throw new UserError(`cannot open the artifact store: ${(err as Error).message}`);
  }
  const markdown = Buffer.from(await fetch(store, outcome.markdown, 'Markdown report')).toString('utf8');
  const reportBytes = await fetch(store, outcome.report, 'JSON report');
  const modelBytes = await fetch(store, outcome.purifiedModel, 'purified model');

  const dir = path.resolve(opts.dir);
  await fs.mkdir(dir, { recursive: true });
  const reportMd = path.join(dir, 'report.md');
  const reportJson = path.join(dir, 'report.json');
  await fs.writeFile(reportMd, markdown);
  await fs.writeFile(reportJson, `${JSON.stringify(JSON.parse(Buffer.from(reportBytes).toString('utf8')), null, 2)}\n`);

  // TensorFlow is loaded only here, once there is a model to export
  const { decodeClassifier, exportLayersModel } = await import('../core/models/layersFormat');
  const classifier = await decodeClassifier(modelBytes, outcome.purifiedModel.uri);
  try {
    const files = await exportLayersModel(classifier, path.resolve(opts.modelDir ?? path.join(dir, 'model')));
    return { markdown, dir, reportMd, reportJson, modelJson: files.modelJson, weightsBin: files.weightsBin };
  } finally {
    classifier.model.dispose();
  }
}

/** A path for messages: relative to the current directory when inside it. */
export function shown(p: string): string {
  const rel = path.relative(process.cwd(), p);
  return rel && !rel.startsWith('..') && !path.isAbsolute(rel) ? rel : p;
}
