/**
 * Stage cache keys are derived from each stage's declared config reads
 * (activities/stageDeclarations.ts). This runs every stage's core call, as the activities call
 * it, on small synthetic data with a config view that records each field read, and checks the
 * declarations both ways: every field read is declared (else the key could miss it and a stale
 * result be reused), and every declared field is read by some run (else cells that should
 * share a result would not). Variant configs reach the reads behind switches.
 */
import { test } from 'node:test';
import { concatDatasets } from '../../core/data/dataset';
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parsePurifyConfig, type PurifyConfig, type PurifyConfigInput } from '../../schemas/purify';
import { isCovered, readPath, readTrackingView, type ReadKind } from '../../core/pipeline/configReads';
import { DisposalScope, plainStageEnv } from '../../core/pipeline/stageEnv';
import {
  mutualLearningStage,
  nonTargetLabelStage,
  ntStudentStage,
  splitDistillationStage,
  splitPlanStage,
  standardTrainingStage,
  teacherTrainingStage,
} from '../../core/pipeline/stageRuns';
import { baselineDefenseStage } from '../../core/pipeline/defenseStage';
import { attackerTrainingStage } from '../../core/pipeline/attackerTraining';
import { prepareData } from '../../core/experiment/prepareData';
import { encodeDataset } from '../../core/data/codec';
import { stageDeclarations } from '../../activities/stageDeclarations';
import { tf } from '../../core/tf';

interface Reads {
  value: Set<string>;
  presence: Set<string>;
}
const readsByStage = new Map<string, Reads>();

/** `cfg` as stage `stage` sees it, with every read added to that stage's record. */
function recording(stage: string, cfg: PurifyConfig): PurifyConfig {
  if (!readsByStage.has(stage)) readsByStage.set(stage, { value: new Set(), presence: new Set() });
  const reads = readsByStage.get(stage)!;
  return readTrackingView(cfg, (p: string, kind: ReadKind) => reads[kind].add(p));
}

const small = (extra: Partial<PurifyConfigInput> = {}) =>
  parsePurifyConfig({
    seed: 3,
    data: { format: 'synthetic', trainSize: 240, testSize: 60, height: 16, width: 16 },
    attack: { name: 'badnets', target: 0, rate: 0.1 },
    cleanBudget: 40,
    cleanReserve: 40,
    training: { epochs: 1, batchSize: 32 },
    ...extra,
    ntml: { mlEpochs: 1, ntEpochs: 1, splitEpochs: 1, diagnosticSamples: 20, mlBatchSize: 16, ...(extra.ntml as object) },
  });

/** The NT-ML stages in pipeline order, as the activities chain them. */
async function ntmlPipeline(cfg: PurifyConfig, scope: DisposalScope, refitEpochs?: number) {
  const env = plainStageEnv(scope);
  const data = await prepareData(recording('prepareData', cfg), async (loc) => loc);
  const standard = (await standardTrainingStage(recording('standardTraining', cfg), data.train, env)).model;
  const targets = await nonTargetLabelStage(recording('nonTargetLabels', cfg), standard, data.train);
  const teacher = (await teacherTrainingStage(recording('teacherTraining', cfg), standard, data.train, env)).model;
  const student = (await ntStudentStage(recording('ntTraining', cfg), standard, data.train, targets, env)).model;
  const sets = { test: data.test, backdoorTest: data.backdoorTest };
  await mutualLearningStage(recording('mutualLearning', cfg), { student, teacher }, { cleanFit: data.cleanFit, cleanHeldOut: data.cleanHeldOut, ...sets }, refitEpochs, env);
  const clean = concatDatasets(data.cleanFit, data.cleanHeldOut);
  const plan = await splitPlanStage(recording('splitPlan', cfg), { teacher: async () => teacher, student, standard }, data.train, clean);
  await splitDistillationStage(
    recording('splitDistillation', cfg),
    { student, standard },
    { train: data.train, kept: plan.kept, cleanHeldOut: data.cleanHeldOut, ...sets },
    refitEpochs,
    env,
    { target: plan.estimatedTarget, groups: data.poison ? { poisoned: data.poison.poisonedIndices, noise: data.poison.crossIndices } : undefined },
  );
  const defended = small({ defense: { name: 'ft', steps: 4, rounds: 2, batchSize: 16 } });
  await baselineDefenseStage(recording('defense', defended), standard, { cleanFit: data.cleanFit, cleanHeldOut: data.cleanHeldOut }, env);
  return data;
}

test('every stage reads exactly the config fields its cache key declares', { timeout: 600_000 }, async () => {
  const scope = new DisposalScope();
  const tensorsBefore = tf.memory().numTensors;
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ntml-stage-reads-'));
  try {
    // the defaults, then the switches that change which fields a stage reads
    const data = await ntmlPipeline(small(), scope);
    await ntmlPipeline(small({ ntml: { studentInit: 'scratch', splitTarget: 'teacher', mlSelect: 'last', splitSelect: 'heldOut', ntLabel: 'mix' } }), scope, 1);
    // the split-distillation remedies read their thresholds only when switched on
    // (splitFallback never: the tiny ci run's t^ evidence is weak, and a skipped split stage reads nothing)
    await ntmlPipeline(small({ ntml: { splitTargetSource: 'mutualLearning', splitGate: 'drop', splitStop: 'proxyAsr', splitAnchor: 0.1, splitFallback: 'never' } }), scope);

    // training-controlled attacks run in standard training: Input-Aware trains its generators
    // there, WaNet poisons every batch with its own augmentation (and the recipe's flip)
    for (const attack of [
      { name: 'inputaware', target: 0, rate: 0.1, maskEpochs: 1 },
      { name: 'wanet', target: 0, rate: 0.1, augment: { padding: 2, rotation: 10 } },
    ]) {
      const tc = small({ attack });
      const tcData = await prepareData(recording('prepareData', tc), async (loc) => loc);
      assert.ok(tcData.trainingControlled, `${attack.name} hands its training to standard training`);
      const out = await attackerTrainingStage(
        recording('standardTraining', tc),
        {
          train: tcData.train,
          eligibleIndices: Int32Array.from(tcData.trainingControlled.eligibleIndices),
          test: tcData.test,
          attackSeed: tcData.trainingControlled.attackSeed,
        },
        plainStageEnv(scope),
      );
      assert.equal(out.poisoned.record.attack, attack.name);
    }

    // protection mode reads the user's files (prepareData is not cached there, but runs on the same view)
    const file = async (name: string, ds: typeof data.train) => {
      const location = path.join(dir, `${name}.ntds`);
      await fs.writeFile(location, encodeDataset(ds));
      return { format: 'ntml' as const, location };
    };
    const protection = parsePurifyConfig({
      mode: 'protection',
      trainingSet: await file('train', data.train),
      cleanSet: await file('clean', data.cleanFit),
      testSet: await file('test', data.test!),
    });
    await prepareData(recording('prepareData', protection), async (loc) => loc);
  } finally {
    scope.disposeAll();
    await fs.rm(dir, { recursive: true, force: true });
  }
  assert.equal(tf.memory().numTensors, tensorsBefore, 'the stages own every model they make: nothing left after the scope ends');

  for (const declaration of stageDeclarations) {
    const reads = readsByStage.get(declaration.stage);
    assert.ok(reads, `stage ${declaration.stage} was run`);
    const undeclared = [...reads.value].filter((p) => !isCovered(p, declaration.reads, 'value'));
    undeclared.push(...[...reads.presence].filter((p) => !isCovered(p, declaration.reads, 'presence')));
    assert.deepEqual(undeclared, [], `${declaration.stage} reads fields its key does not declare`);
    const neverRead = declaration.reads.map(readPath).filter((d) => ![...reads.value].some((p) => isCovered(p, [d])));
    assert.deepEqual(neverRead, [], `${declaration.stage} declares fields no run read`);
  }
  console.log(
    `measured reads: ${[...readsByStage].map(([stage, r]) => `${stage}: ${[...r.value].sort().join(' ')}`).join('; ')}`,
  );
});
