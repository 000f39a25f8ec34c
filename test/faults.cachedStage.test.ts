/**
 * A corrupted cached stage artifact: the backdoored model that the reference run's standard
 * training left in the stage cache is overwritten in S3 with other bytes (a disk or a person
 * damaging the store). The same config run again must not trust the cache entry: standard
 * training is recomputed (its output fails verification), the object is repaired by the new
 * put, every later stage is reused (their inputs' digests are unchanged), and the purified
 * model has exactly the reference weights.
 */
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { ciConfig, quietRuntime, referenceRun, runPurifyWorkflow } from './support/temporal';
import { createS3Client, s3OptionsFromEnv, storeFromEnv, type ArtifactRef } from '../store/index';

quietRuntime();

test('a cached stage artifact corrupted in S3 is recomputed, repaired, and the run ends with the reference weights', { timeout: 600_000 }, async () => {
  const reference = await referenceRun();
  const store = storeFromEnv();
  const standard = reference.outcome.summary.stages.find((s) => s.stage === 'standardTraining');
  assert.ok(standard?.cacheKey, `the reference run cached standard training: ${JSON.stringify(reference.outcome.summary.stages)}`);
  const recordKey = (await store.listRecords('cache/')).find((k) => k === standard.cacheKey || k.endsWith(`/${standard.cacheKey}`));
  assert.ok(recordKey, `a cache record for ${standard.cacheKey}`);
  const entry = (await store.getRecord<{ output: { model: ArtifactRef } }>(recordKey))!;
  const model = entry.output.model;
  assert.equal(await store.verify(model), true);

  // overwrite the object behind the store's back: same key, same length, other bytes
  const { bucket, key } = /^s3:\/\/(?<bucket>[^/]+)\/(?<key>.+)$/.exec(model.uri)!.groups!;
  const s3 = createS3Client(s3OptionsFromEnv());
  try {
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: new Uint8Array(randomBytes(model.bytes)) }));
  } finally {
    s3.destroy();
  }
  assert.equal(await store.verify(model), false, 'the cached model no longer verifies');

  const again = await runPurifyWorkflow('faults-cached', ciConfig());
  const stages = new Map(again.report.stages.map((s) => [s.stage, s]));
  assert.equal(stages.get('standardTraining')?.cached, false, 'standard training was recomputed, not read from the damaged cache');
  assert.equal(stages.get('mutualLearning')?.cached, true, 'later stages were reused: the recomputed model has the same digest');
  assert.equal(await store.verify(model), true, 'the new put repaired the corrupt object');
  assert.equal(again.outcome.purifiedModel.sha256, reference.outcome.purifiedModel.sha256, 'the same weights as the uninterrupted run');
});
