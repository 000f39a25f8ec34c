/**
 * The stage-activity helper disposes what a stage loaded or created however the stage ends:
 * an activity whose core call throws leaves the number of live tensors unchanged. A stage
 * that reads a config field its declaration does not list fails once (non-retryable), naming it.
 * Runs the real activities on the real S3 store, in Temporal's activity test environment.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ApplicationFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import { trainTeacher } from '../activities/purify';
import { stageActivity } from '../activities/stageActivity';
import { teacherTrainingStage } from '../activities/stageDeclarations';
import { saveDataset, saveModel } from '../activities/context';
import { createClassifier } from '../core/models/layersFormat';
import { generateSyntheticSplits } from '../core/data/synthetic';
import { tf } from '../core/tf';
import type { DataRefs } from '../workflows/contract';

const config = { data: { format: 'synthetic' }, attack: { name: 'badnets' }, training: { epochs: 1 } };

async function fixture() {
  // f_std takes 16x16 images, the training set holds 12x12 ones: the teacher stage fails in its core call
  const model = createClassifier('tinyCnn', { height: 16, width: 16, channels: 3 }, 10, 1);
  const standard = await saveModel(model);
  model.model.dispose();
  const { train } = generateSyntheticSplits({ trainSize: 40, testSize: 10, height: 12, width: 12, channels: 3, numClasses: 10, seed: 1 });
  const ref = await saveDataset(train);
  const data: DataRefs = { train: ref, cleanFit: ref, cleanHeldOut: ref, summary: {} as DataRefs['summary'] };
  return { standard, data };
}

test('an activity whose core call throws leaves tf.memory().numTensors unchanged', { timeout: 120_000 }, async () => {
  const { standard, data } = await fixture();
  const before = tf.memory().numTensors;
  const env = new MockActivityEnvironment();
  await assert.rejects(env.run(trainTeacher, { config, data, standard, cache: false }), (err: Error) => {
    assert.ok(!(err instanceof ApplicationFailure && err.nonRetryable), `a shape error is not bad input: ${err.message}`);
    return true;
  });
  assert.equal(tf.memory().numTensors, before, 'f_std (loaded) and the fresh teacher (created) were both disposed');
});

test('a stage reading an undeclared field fails non-retryably, naming it, and still disposes its models', { timeout: 120_000 }, async () => {
  const { standard, data } = await fixture();
  const before = tf.memory().numTensors;
  const env = new MockActivityEnvironment();
  const declaration = { ...teacherTrainingStage, reads: ['model', 'training'] };
  const run = () =>
    stageActivity(declaration, { config, data, standard, cache: false }, async (cfg, host) => {
      await host.model(standard);
      return { seed: cfg.seed };
    });
  await assert.rejects(env.run(run), (err: Error) => {
    assert.ok(err instanceof ApplicationFailure, err.message);
    assert.equal(err.nonRetryable, true);
    assert.equal(err.type, 'UndeclaredConfigReadError');
    assert.match(err.message, /teacherTraining read config field seed/);
    return true;
  });
  assert.equal(tf.memory().numTensors, before);
});
