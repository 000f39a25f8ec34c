/**
 * The purify pipeline's activities: each loads its inputs from the artifact store, calls
 * one NT-ML stage of the core, checkpoints while training, and returns references.
 */
import { Context } from '@temporalio/activity';
import { deriveSeed } from '../core/rng';
import { prepareData as prepareCoreData } from '../core/experiment/prepareData';
import { diagnosticSample, evaluateClassifier, sampleDiagnostics } from '../core/experiment/evaluate';
import { initialiseWeights } from '../core/models/architectures';
import { createClassifier, importLayersModel, cloneClassifier, ModelFormatError } from '../core/models/layersFormat';
import type { Classifier } from '../core/models/classifier';
import type { ImageDataset } from '../core/data/dataset';
import { decodeNtTargets, encodeNtTargets } from '../core/ntml/nonTargetLabels';
import { mlLearningRate } from '../core/ntml/config';
import {
  computeNtTargets,
  planSplit as planCoreSplit,
  runMutualLearning,
  runSplitDistillation,
  trainNtStudent,
  trainSelfDistilledTeacher,
  trainStandard,
} from '../core/ntml/stages';
import { trainInputAwareBackdoor } from '../core/attacks/inputAwareTraining';
import type { InputAwareConfig } from '../core/attacks/inputAware';
import { buildBackdoorTestSet } from '../core/attacks/testSet';
import type { EpochLoopResult } from '../core/train/epochLoop';
import type { TrainingCheckpoint } from '../core/train/checkpoint';
import type { PurifyConfig } from '../schemas/purify';
import { checkpointHooks, findResumePoint, prepareControl } from './checkpointing';
import { cachedStage, digestOf } from './stageCache';
import {
  artifactStore,
  withKeepAlive,
  config as parseConfig,
  loadBackdoorTest,
  loadDataset,
  loadJson,
  loadModel,
  localFile,
  nonRetryableOnBadInput,
  saveBackdoorTest,
  saveDataset,
  saveJson,
  saveModel,
} from './context';
import type { ArtifactRef, DataRefs, Metrics, MutualLearningOutput, SplitDistillationOutput, SplitPlanOutput, TrainedModel } from '../workflows/contract';

const seconds = (t0: number) => (Date.now() - t0) / 1000;

export async function prepareData(input: { config: unknown; cache?: boolean }): Promise<DataRefs> {
  return withKeepAlive(() => nonRetryableOnBadInput(async () => {
    const cfg = parseConfig(input.config);
    // user files may change under the same path: only generated/evaluation data is cached
    const cacheable = cfg.mode === 'evaluation' && input.cache !== false;
    const dependsOn = { data: cfg.data, attack: cfg.attack, cleanBudget: cfg.cleanBudget, cleanReserve: cfg.cleanReserve, seed: cfg.seed, heldOutFraction: cfg.ntml.heldOutFraction };
    return cachedStage('prepareData', dependsOn, cacheable, () => computePreparedData(cfg));
  }));
}

async function computePreparedData(cfg: PurifyConfig): Promise<DataRefs> {
  {
    const { control, info } = await prepareControl('poisonTrigger');
    const data = await prepareCoreData(cfg, (loc) => localFile(loc), control);
    Context.current().heartbeat({ stage: 'prepareData' });
    const refs: DataRefs = {
      train: await saveDataset(data.train),
      cleanFit: await saveDataset(data.cleanFit),
      cleanHeldOut: await saveDataset(data.cleanHeldOut),
      test: data.test ? await saveDataset(data.test) : undefined,
      backdoorTest: data.backdoorTest ? await saveBackdoorTest(data.backdoorTest) : undefined,
      summary: data.summary,
      ...(info.resumedFromEpoch > 0 || info.skippedCheckpoints.length ? info : {}),
    };
    if (data.trainingControlled) {
      refs.attackTraining = {
        attack: data.trainingControlled.attack.name,
        eligibleIndices: await saveJson(data.trainingControlled.eligibleIndices),
        attackSeed: data.trainingControlled.attackSeed,
      };
    }
    if (data.poison) {
      refs.poison = {
        attack: data.poison.attack,
        poisonedCount: data.poison.poisonedCount,
        poisonedIndices: await saveJson(data.poison.poisonedIndices),
        triggerParameters: data.poison.triggerParameters,
      };
    }
    return refs;
  }
}

/** A fresh model for the run: a built-in architecture or the user's, re-initialised from the seed. */
async function freshModel(cfg: PurifyConfig, like: ImageDataset, seed: number): Promise<Classifier> {
  if ('arch' in cfg.model) return createClassifier(cfg.model.arch, like, like.numClasses, seed);
  const c = await importLayersModel(await localFile(cfg.model.layersModel), cfg.model.inputRange);
  initialiseWeights(c.model, seed);
  return c;
}

async function checkpointed(
  stage: string,
  epochs: number,
  run: (control: { resume?: TrainingCheckpoint; hooks: ReturnType<typeof checkpointHooks> }) => Promise<EpochLoopResult>,
): Promise<Omit<TrainedModel, 'model'> & { result: EpochLoopResult }> {
  const t0 = Date.now();
  const { checkpoint, info } = await findResumePoint(stage);
  const hooks = checkpointHooks(stage, epochs);
  const result = await run({ resume: checkpoint, hooks });
  return { result, history: result.history, seconds: seconds(t0), ...info };
}

export async function trainStandardModel(input: { config: unknown; data: DataRefs; cache?: boolean }): Promise<TrainedModel> {
  return nonRetryableOnBadInput(async () => {
    const cfg = parseConfig(input.config);
    const attackTraining = input.data.attackTraining;
    const dependsOn = {
      train: digestOf(input.data.train),
      model: cfg.model,
      training: cfg.training,
      seed: cfg.seed,
      // iad 2: the generators' Adam became the checkpointable core Adam (same update rule);
      // iad 3: the generators' forward on the fast path (same function, other float rounding);
      // iad 4: mask-phase image distances in per-channel std units (the authors' standardised inputs)
      ...(attackTraining ? { attack: cfg.attack, eligible: digestOf(attackTraining.eligibleIndices), test: digestOf(input.data.test), iad: 4 } : {}),
    };
    // a user architecture is read from a path whose content may change: not cached
    return cachedStage('standardTraining', dependsOn, input.cache !== false && 'arch' in cfg.model, async () => {
    if (attackTraining) return trainInputAwareStandard(cfg, input.data, attackTraining);
    const train = await loadDataset(input.data.train);
    const model = await freshModel(cfg, train, deriveSeed(cfg.seed, 'init:standard'));
    const out = await checkpointed('standard', cfg.training.epochs, (control) =>
      trainStandard(model, train, cfg.training, cfg.seed, control),
    );
    const ref = await saveModel(model);
    model.model.dispose();
    return { model: ref, history: out.history, seconds: out.seconds, resumedFromEpoch: out.resumedFromEpoch, skippedCheckpoints: out.skippedCheckpoints };
    });
  });
}

/**
 * Input-Aware: the attacker's own training run is the standard training. It trains the
 * classifier with the mask and pattern generators, materialises the poisoned training set
 * from the trained generators, and builds the triggered test set; the rest of the pipeline
 * works on those as on any poisoned data. Checkpoints after every epoch of both phases (mask
 * epochs first, then joint ones, in one record): a retried attempt continues from the newest.
 */
async function trainInputAwareStandard(
  cfg: PurifyConfig,
  data: DataRefs,
  attackTraining: NonNullable<DataRefs['attackTraining']>,
): Promise<TrainedModel> {
  const t0 = Date.now();
  const train = await loadDataset(data.train);
  const eligibleIndices = Int32Array.from(await loadJson<number[]>(attackTraining.eligibleIndices));
  const classifier = await freshModel(cfg, train, deriveSeed(cfg.seed, 'init:standard'));
  const attack = cfg.attack as InputAwareConfig;
  const { checkpoint: resume, info } = await findResumePoint('inputaware');
  const checkpoints = checkpointHooks('inputaware', attack.maskEpochs + cfg.training.epochs);
  const result = await trainInputAwareBackdoor({
    train,
    eligibleIndices,
    config: attack,
    classifier,
    recipe: cfg.training,
    seed: attackTraining.attackSeed,
    resume,
    hooks: {
      signal: checkpoints.signal,
      onBatch: (_phase, epoch, batch, batches) => checkpoints.onBatch!(epoch, batch, batches),
      onCheckpoint: (record, snapshot) => checkpoints.onEpochEnd!(record, snapshot),
    },
  });
  const test = data.test ? await loadDataset(data.test) : undefined;
  const backdoorTest = test ? buildBackdoorTestSet(test, attack, attackTraining.attackSeed, result.triggerParameters) : undefined;
  const poisoned = result.poisoned;
  const generators = await artifactStore().put(result.encodedGenerators);
  const refs: DataRefs = {
    ...data,
    train: await saveDataset(poisoned.dataset),
    backdoorTest: backdoorTest ? await saveBackdoorTest(backdoorTest) : undefined,
    attackTraining: undefined,
    poison: {
      attack: poisoned.record.attack,
      poisonedCount: poisoned.record.poisonedCount,
      poisonedIndices: await saveJson(Array.from(poisoned.poisonedIndices)),
      triggerParameters: { ...poisoned.record.triggerParameters, generators: generators.uri, generatorsSha256: generators.sha256 },
    },
    summary: { ...data.summary, poisonedCount: poisoned.record.poisonedCount, backdoorTestSize: backdoorTest?.images.labels.length ?? 0 },
  };
  const model = await saveModel(classifier);
  classifier.model.dispose();
  result.generators.mask.dispose();
  result.generators.pattern.dispose();
  return {
    model,
    // the classifier's epochs; the mask generator's own phase precedes them, with its mask health per epoch
    history: result.history,
    phaseHistories: { inputAwareMask: result.maskHistory },
    seconds: seconds(t0),
    ...info,
    data: refs,
  };
}

/** Protection mode with the user's trained model as f_std. */
export async function importStandardModel(input: { config: unknown; data: DataRefs }): Promise<TrainedModel> {
  return withKeepAlive(() => nonRetryableOnBadInput(async () => {
    const t0 = Date.now();
    const cfg = parseConfig(input.config);
    const spec = cfg.standardModel!;
    const model = await importLayersModel(await localFile(spec.layersModel), spec.inputRange);
    const s = input.data.summary;
    const [h, w, c] = model.meta.inputShape;
    if (h !== s.shape[0] || w !== s.shape[1] || c !== s.shape[2] || model.meta.numClasses !== s.numClasses) {
      throw new ModelFormatError(
        `standardModel: expects ${h}x${w}x${c} inputs and ${model.meta.numClasses} classes, the training set has ${s.shape.join('x')} and ${s.numClasses}`,
      );
    }
    const ref = await saveModel(model);
    model.model.dispose();
    return { model: ref, history: [], seconds: seconds(t0), resumedFromEpoch: 0, skippedCheckpoints: [] };
  }));
}

export async function computeNonTargetLabels(input: {
  config: unknown;
  data: DataRefs;
  standard: ArtifactRef;
  cache?: boolean;
}): Promise<{ labels: ArtifactRef; seconds: number; cached?: boolean }> {
  const cfg = parseConfig(input.config);
  const { ntLabel, tau, mixEpsilon } = cfg.ntml;
  const dependsOn = { standard: digestOf(input.standard), train: digestOf(input.data.train), ntLabel, tau, mixEpsilon };
  return withKeepAlive(() => cachedStage('nonTargetLabels', dependsOn, input.cache !== false, () => nonRetryableOnBadInput(async () => {
    const t0 = Date.now();
    const standard = await loadModel(input.standard);
    const targets = await computeNtTargets(standard, await loadDataset(input.data.train), cfg.ntml);
    standard.model.dispose();
    return { labels: await artifactStore().put(encodeNtTargets(targets)), seconds: seconds(t0) };
  })));
}

export async function trainTeacher(input: { config: unknown; data: DataRefs; standard: ArtifactRef; cache?: boolean }): Promise<TrainedModel> {
  const cfg = parseConfig(input.config);
  const dependsOn = { standard: digestOf(input.standard), train: digestOf(input.data.train), model: cfg.model, training: cfg.training, tau: cfg.ntml.tau, seed: cfg.seed };
  return cachedStage('teacherTraining', dependsOn, input.cache !== false && 'arch' in cfg.model, () => nonRetryableOnBadInput(async () => {
    const train = await loadDataset(input.data.train);
    const standard = await loadModel(input.standard);
    const teacher = await freshModel(cfg, train, deriveSeed(cfg.seed, 'init:teacher'));
    const out = await checkpointed('teacher', cfg.training.epochs, (control) =>
      trainSelfDistilledTeacher(standard, teacher, train, cfg.training, cfg.ntml, cfg.seed, control),
    );
    const ref = await saveModel(teacher);
    teacher.model.dispose();
    standard.model.dispose();
    return { model: ref, history: out.history, seconds: out.seconds, resumedFromEpoch: out.resumedFromEpoch, skippedCheckpoints: out.skippedCheckpoints };
  }));
}

export async function trainNonTargetStudent(input: {
  config: unknown;
  data: DataRefs;
  standard: ArtifactRef;
  labels: ArtifactRef;
  cache?: boolean;
}): Promise<TrainedModel> {
  const cfg = parseConfig(input.config);
  const { studentInit, ntEpochs, ntLearningRate } = cfg.ntml;
  const dependsOn = {
    standard: digestOf(input.standard),
    train: digestOf(input.data.train),
    labels: digestOf(input.labels),
    studentInit,
    ntEpochs,
    ntLearningRate,
    model: cfg.model,
    training: cfg.training,
    seed: cfg.seed,
  };
  return cachedStage('ntTraining', dependsOn, input.cache !== false && 'arch' in cfg.model, () => nonRetryableOnBadInput(async () => {
    const train = await loadDataset(input.data.train);
    const standard = await loadModel(input.standard);
    const student =
      cfg.ntml.studentInit === 'standard' ? await cloneClassifier(standard) : await freshModel(cfg, train, deriveSeed(cfg.seed, 'init:student'));
    standard.model.dispose();
    const targets = decodeNtTargets(await artifactStore().get(input.labels), input.labels.uri);
    const epochs = cfg.ntml.studentInit === 'standard' ? cfg.ntml.ntEpochs : cfg.training.epochs;
    const out = await checkpointed('ntStudent', epochs, (control) =>
      trainNtStudent(student, train, targets, cfg.training, cfg.ntml, cfg.seed, control),
    );
    const ref = await saveModel(student);
    student.model.dispose();
    return { model: ref, history: out.history, seconds: out.seconds, resumedFromEpoch: out.resumedFromEpoch, skippedCheckpoints: out.skippedCheckpoints };
  }));
}

/**
 * The switches mutual learning reads. Cells that differ only in what comes after it (split
 * target, split epochs, refitOnAllClean, `split` vs `clean`) share one ML stage in the cache, so a
 * refit run shares its selection run with the plain run; the replay is keyed by its epochs on top.
 */
function mutualLearningSwitches(n: PurifyConfig['ntml']) {
  return {
    direction: n.ml === 'oneWay' ? 'oneWay' : 'mutual',
    lambda: n.lambda,
    mlTau: n.mlTau,
    mlEpochs: n.mlEpochs,
    mlBatchSize: n.mlBatchSize,
    mlBatchNorm: n.mlBatchNorm,
    learningRate: mlLearningRate(n),
    diagnosticSamples: n.diagnosticSamples,
    // only when set: ML stages stored before the switch existed keep their keys
    ...(n.mlSelect === 'last' ? { mlSelect: n.mlSelect } : {}),
  };
}

/** Per-epoch ACC/ASR of `student` on a fixed sample of the test sets (recorded, never selected on). */
async function testDiagnostics(data: DataRefs, cfg: PurifyConfig, student: Classifier) {
  const test = data.test ? await loadDataset(data.test) : undefined;
  const backdoor = data.backdoorTest ? await loadBackdoorTest(data.backdoorTest) : undefined;
  return sampleDiagnostics(student, diagnosticSample(test, backdoor, cfg.ntml.diagnosticSamples, deriveSeed(cfg.seed, 'diagnostics')));
}

/** The switches split distillation reads (t^ and the kept inputs come in as the `kept` artifact). */
function splitDistillationSwitches(n: PurifyConfig['ntml']) {
  return {
    splitEpochs: n.splitEpochs,
    splitBatchSize: n.splitBatchSize,
    mlBatchNorm: n.mlBatchNorm,
    learningRate: mlLearningRate(n),
    splitSelect: n.splitSelect,
    diagnosticSamples: n.diagnosticSamples,
  };
}

export async function mutualLearning(input: {
  config: unknown;
  data: DataRefs;
  student: ArtifactRef;
  teacher: ArtifactRef;
  /** refitOnAllClean: replay this many epochs (the selection run's choice) on all of D_c */
  refitEpochs?: number;
  cache?: boolean;
}): Promise<MutualLearningOutput> {
  const cfg = parseConfig(input.config);
  const d = input.data;
  const refitEpochs = input.refitEpochs;
  const dependsOn = {
    student: digestOf(input.student),
    teacher: digestOf(input.teacher),
    data: [d.cleanFit, d.cleanHeldOut, d.test, d.backdoorTest].map(digestOf),
    ntml: mutualLearningSwitches(cfg.ntml),
    augment: cfg.training.augment,
    seed: cfg.seed,
    ...(refitEpochs === undefined ? {} : { refitEpochs }),
  };
  return cachedStage('mutualLearning', dependsOn, input.cache !== false, () => nonRetryableOnBadInput(async () => {
    const [student, teacher] = [await loadModel(input.student), await loadModel(input.teacher)];
    const cleanFit = await loadDataset(input.data.cleanFit);
    const heldOut = await loadDataset(input.data.cleanHeldOut);
    const diagnostics = await testDiagnostics(input.data, cfg, student);
    const out = await checkpointed(refitEpochs === undefined ? 'mutualLearning' : 'mutualLearningRefit', refitEpochs ?? cfg.ntml.mlEpochs, (control) =>
      runMutualLearning(student, teacher, cleanFit, heldOut, cfg.ntml, cfg.training.augment, cfg.seed, { ...control, diagnostics, refitEpochs }),
    );
    const refs = { model: await saveModel(student), teacher: await saveModel(teacher) };
    student.model.dispose();
    teacher.model.dispose();
    return {
      ...refs,
      history: out.history,
      seconds: out.seconds,
      resumedFromEpoch: out.resumedFromEpoch,
      skippedCheckpoints: out.skippedCheckpoints,
      selectedEpoch: out.result.selectedEpoch,
    };
  }));
}

export async function planSplit(input: {
  config: unknown;
  data: DataRefs;
  student: ArtifactRef;
  teacher: ArtifactRef;
  standard: ArtifactRef;
  cache?: boolean;
}): Promise<SplitPlanOutput> {
  const from = parseConfig(input.config).ntml.splitTarget;
  const models = [input.teacher, input.student, input.standard, input.data.train].map(digestOf);
  // t^ from the teacher keeps the plain list as key: plans stored before the switch existed still count
  const dependsOn = from === 'teacher' ? models : { models, splitTarget: from };
  return withKeepAlive(() => cachedStage('splitPlan', dependsOn, input.cache !== false, () => nonRetryableOnBadInput(async () => {
    const t0 = Date.now();
    // only splitTarget teacher reads the teacher: the default never loads it
    const teacher = from === 'teacher' ? await loadModel(input.teacher) : undefined;
    const [student, standard] = [await loadModel(input.student), await loadModel(input.standard)];
    const plan = await planCoreSplit(teacher, student, standard, await loadDataset(input.data.train), from);
    [teacher, student, standard].forEach((m) => m?.model.dispose());
    return {
      kept: await saveJson(Array.from(plan.kept)),
      estimatedTarget: plan.estimatedTarget,
      excess: plan.excess,
      keptFraction: plan.keptFraction,
      seconds: seconds(t0),
    };
  })));
}

export async function splitDistillation(input: {
  config: unknown;
  data: DataRefs;
  student: ArtifactRef;
  standard: ArtifactRef;
  kept: ArtifactRef;
  /** refitOnAllClean: replay this many epochs (the selection run's choice), no selection */
  refitEpochs?: number;
  cache?: boolean;
}): Promise<SplitDistillationOutput> {
  const cfg = parseConfig(input.config);
  const refitEpochs = input.refitEpochs;
  const dependsOn = {
    models: [input.student, input.standard, input.kept, input.data.train, input.data.cleanHeldOut].map(digestOf),
    diagnostics: [input.data.test, input.data.backdoorTest].map(digestOf),
    ntml: splitDistillationSwitches(cfg.ntml),
    augment: cfg.training.augment,
    seed: cfg.seed,
    ...(refitEpochs === undefined ? {} : { refitEpochs }),
  };
  return cachedStage('splitDistillation', dependsOn, input.cache !== false, () => nonRetryableOnBadInput(async () => {
    const [student, standard] = [await loadModel(input.student), await loadModel(input.standard)];
    const train = await loadDataset(input.data.train);
    const heldOut = await loadDataset(input.data.cleanHeldOut);
    const kept = Int32Array.from(await loadJson<number[]>(input.kept));
    const diagnostics = await testDiagnostics(input.data, cfg, student);
    const out = await checkpointed(refitEpochs === undefined ? 'splitDistillation' : 'splitDistillationRefit', refitEpochs ?? cfg.ntml.splitEpochs, (control) =>
      runSplitDistillation(student, standard, train, kept, heldOut, cfg.ntml, cfg.training.augment, cfg.seed, { ...control, refitEpochs, diagnostics }),
    );
    const ref = await saveModel(student);
    student.model.dispose();
    standard.model.dispose();
    return {
      model: ref,
      history: out.history,
      seconds: out.seconds,
      resumedFromEpoch: out.resumedFromEpoch,
      skippedCheckpoints: out.skippedCheckpoints,
      selectedEpoch: out.result.selectedEpoch,
    };
  }));
}

export async function evaluateModels(input: { data: DataRefs; models: Record<string, ArtifactRef> }): Promise<Record<string, Metrics>> {
  return withKeepAlive(() => nonRetryableOnBadInput(async () => {
    const test = input.data.test ? await loadDataset(input.data.test) : undefined;
    const backdoor = input.data.backdoorTest ? await loadBackdoorTest(input.data.backdoorTest) : undefined;
    const out: Record<string, Metrics> = {};
    for (const [name, ref] of Object.entries(input.models)) {
      const model = await loadModel(ref);
      out[name] = await evaluateClassifier(model, test, backdoor);
      model.model.dispose();
      Context.current().heartbeat({ stage: 'evaluation', model: name });
    }
    return out;
  }));
}
