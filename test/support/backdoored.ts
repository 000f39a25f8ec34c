/**
 * A BadNets-backdoored tinyCnn on the ci-tier synthetic data, trained once per test run
 * and shared by the defense tests through a fixture file (the data is re-derived: it is a
 * deterministic function of the config and seed).
 */
import { createHash } from 'node:crypto';
import { parsePurifyConfig } from '../../schemas/purify';
import { prepareData, type PreparedData } from '../../core/experiment/prepareData';
import { decodeClassifier } from '../../core/models/layersFormat';
import type { Classifier } from '../../core/models/classifier';
import { evaluateClassifier, type ModelMetrics } from '../../core/experiment/evaluate';
import { cachedFixtureBytes, trainedTinyCnnBytes } from './fixtures';

export const backdooredConfig = {
  mode: 'evaluation',
  tier: 'ci',
  seed: 1,
  data: { format: 'synthetic', trainSize: 2000, testSize: 1000 },
  attack: { name: 'badnets', target: 0, rate: 0.1 },
  cleanBudget: 100,
} as const;

export interface BackdooredFixture {
  data: PreparedData;
  /** a fresh copy of the backdoored model, the caller's to change and dispose */
  model(): Promise<Classifier>;
  /** ACC/ASR/RA of the backdoored model on the test sets */
  before: ModelMetrics;
}

let cached: Promise<BackdooredFixture> | undefined;

export function backdooredFixture(): Promise<BackdooredFixture> {
  cached ??= build();
  return cached;
}

async function build(): Promise<BackdooredFixture> {
  const cfg = parsePurifyConfig(backdooredConfig);
  const data = await prepareData(cfg);
  // the data the model is trained on changes with prepareData's protocol (2: the training set
  // excludes the clean reserve), so a fixture from an older protocol is not reused
  const tag = createHash('sha256').update(JSON.stringify({ ...backdooredConfig, dataProtocol: 2 })).digest('hex').slice(0, 12);
  const file = `backdoored-${tag}.ntmodel`;
  const bytes = await cachedFixtureBytes(file, () => trainedTinyCnnBytes(data.train, cfg));
  const probe = await decodeClassifier(bytes, file);
  const before = await evaluateClassifier(probe, data.test, data.backdoorTest);
  probe.model.dispose();
  return { data, before, model: () => decodeClassifier(bytes, file) };
}
