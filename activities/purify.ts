/**
 * The purify pipeline's activities: each loads its inputs from the artifact store, calls one
 * stage of the core (core/pipeline/stageRuns.ts) through the stage-activity helper (wrappers,
 * cache key from the stage's declaration, disposal), and stores what it returns.
 */
import { prepareData as prepareCoreData } from '../core/experiment/prepareData';
import { evaluateClassifier } from '../core/experiment/evaluate';
import { importLayersModel, ModelFormatError } from '../core/models/layersFormat';
import { decodeNtTargets, encodeNtTargets } from '../core/ntml/nonTargetLabels';
import {
  mutualLearningStage as runMutualLearningStage,
  nonTargetLabelStage,
  ntStudentStage,
  splitDistillationStage as runSplitDistillationStage,
  splitPlanStage as runSplitPlanStage,
  standardTrainingStage as runStandardTrainingStage,
  teacherTrainingStage as runTeacherTrainingStage,
  type TrainedStage,
} from '../core/pipeline/stageRuns';
import { attackerTrainingStage } from '../core/pipeline/attackerTraining';
import { concatDatasets } from '../core/data/dataset';
import { splitSummary } from '../core/ntml/splitSummary';
import type { PurifyConfig } from '../schemas/purify';
import { activity, configActivity, stageActivity, type ActivityHost } from './stageActivity';
import { describeOrigin, findLearnedTrigger, hasLearnedTrigger, learnedTriggerDeclaration, learnedTriggerKeys, recordLearnedTrigger } from './learnedTriggerCache';
import {
  mutualLearningStage,
  nonTargetLabelsStage,
  ntTrainingStage,
  prepareDataStage,
  splitDistillationStage,
  splitPlanStage,
  standardTrainingStage,
  teacherTrainingStage,
  type DataInput,
  type MutualLearningInput,
  type NtStudentInput,
  type SplitDistillationInput,
  type SplitPlanInput,
  type StageInput,
  type StandardInput,
} from './stageDeclarations';
import {
  artifactStore,
  Context,
  loadBackdoorTest,
  loadDataset,
  loadJson,
  saveBackdoorTest,
  saveDataset,
  saveJson,
  saveModel,
} from './context';
import type { ArtifactRef, DataRefs, Metrics, MutualLearningOutput, SplitDistillationOutput, SplitPlanOutput, TrainedModel } from '../workflows/contract';

export async function prepareData(input: StageInput): Promise<DataRefs> {
  return stageActivity(prepareDataStage, input, async (cfg, host) => {
    const trigger = hasLearnedTrigger(cfg) ? await storedTrigger(cfg, input) : undefined;
    // a stored trigger optimises nothing: no checkpoints to look for (they stay under this stage's key)
    const { control, info } = trigger?.entry
      ? { control: { signal: host.signal, learnedTrigger: trigger.entry.triggerParameters }, info: { resumedFromEpoch: 0, skippedCheckpoints: [] } }
      : await host.prepareControl('poisonTrigger');
    const data = await prepareCoreData(cfg, (loc) => host.localFile(loc), control);
    Context.current().heartbeat({ stage: 'prepareData' });
    if (trigger && !trigger.entry && data.poison) {
      const workflowId = Context.current().info.workflowExecution?.workflowId;
      await recordLearnedTrigger(artifactStore(), trigger.keys.trigger, data.poison.attack, data.poison.triggerParameters, {
        stage: 'prepareData',
        key: trigger.keys.prepareData,
        ...(workflowId ? { workflowId } : {}),
      });
    }
    const reusedFrom = trigger?.entry?.madeBy;
    const refs: DataRefs = {
      train: await saveDataset(data.train),
      cleanFit: await saveDataset(data.cleanFit),
      cleanHeldOut: await saveDataset(data.cleanHeldOut),
      test: data.test ? await saveDataset(data.test) : undefined,
      backdoorTest: data.backdoorTest ? await saveBackdoorTest(data.backdoorTest) : undefined,
      sourceIndices: data.sourceIndices ? await saveJson(data.sourceIndices) : undefined,
      summary: reusedFrom ? { ...data.summary, triggerReusedFrom: describeOrigin(trigger!.keys.trigger, reusedFrom) } : data.summary,
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
        ...(data.poison.crossIndices ? { crossIndices: await saveJson(data.poison.crossIndices) } : {}),
        triggerParameters: data.poison.triggerParameters,
        ...(trigger ? { triggerKey: trigger.keys.trigger } : {}),
        ...(reusedFrom ? { triggerReusedFrom: reusedFrom } : {}),
      };
    }
    return refs;
  });
}

/**
 * The learned trigger's keys and, with the stage cache on, its stored entry (one that verifies).
 * With the cache off (`cache: false`) the trigger is learned from scratch, as every stage is.
 */
async function storedTrigger(cfg: PurifyConfig, input: StageInput) {
  const keys = await learnedTriggerKeys(cfg, input);
  const lookUp = input.cache !== false && (learnedTriggerDeclaration.cacheable?.(cfg) ?? true);
  return { keys, entry: lookUp ? await findLearnedTrigger(artifactStore(), keys.trigger) : undefined };
}

/** A trained model's stored form: the model, its history and how its phase resumed. */
async function trainedModel(host: ActivityHost, out: TrainedStage): Promise<TrainedModel> {
  return { model: await saveModel(out.model), history: out.result.history, seconds: host.seconds(), ...host.resumeInfo() };
}

export async function trainStandardModel(input: DataInput): Promise<TrainedModel> {
  return stageActivity(standardTrainingStage, input, async (cfg, host) => {
    if (input.data.attackTraining) return trainAttackerStandard(cfg, host, input.data, input.data.attackTraining);
    return trainedModel(host, await runStandardTrainingStage(cfg, await loadDataset(input.data.train), host));
  });
}

/**
 * A training-controlled attack (Input-Aware, WaNet): the attacker's training run is the
 * standard training; it also yields the poisoned data the later stages see.
 */
async function trainAttackerStandard(
  cfg: PurifyConfig,
  host: ActivityHost,
  data: DataRefs,
  attackTraining: NonNullable<DataRefs['attackTraining']>,
): Promise<TrainedModel> {
  const result = await attackerTrainingStage(
    cfg,
    {
      train: await loadDataset(data.train),
      eligibleIndices: Int32Array.from(await loadJson<number[]>(attackTraining.eligibleIndices)),
      test: data.test ? await loadDataset(data.test) : undefined,
      attackSeed: attackTraining.attackSeed,
    },
    host,
  );
  const { poisoned, backdoorTest } = result;
  // a trigger that lives in bytes (Input-Aware's generators) is stored and named in the record
  const artifact = result.triggerArtifact && (await artifactStore().put(result.triggerArtifact.bytes));
  const field = result.triggerArtifact?.field;
  const refs: DataRefs = {
    ...data,
    train: await saveDataset(poisoned.dataset),
    backdoorTest: backdoorTest ? await saveBackdoorTest(backdoorTest) : undefined,
    attackTraining: undefined,
    poison: {
      attack: poisoned.record.attack,
      poisonedCount: poisoned.record.poisonedCount,
      poisonedIndices: await saveJson(Array.from(poisoned.poisonedIndices)),
      // WaNet's noise-mode and Input-Aware's cross samples: split distillation's diagnostics report them apart
      ...(poisoned.crossIndices ? { crossIndices: await saveJson(Array.from(poisoned.crossIndices)) } : {}),
      triggerParameters: artifact && field ? { ...poisoned.record.triggerParameters, [field]: artifact.uri, [`${field}Sha256`]: artifact.sha256 } : poisoned.record.triggerParameters,
    },
    summary: { ...data.summary, poisonedCount: poisoned.record.poisonedCount, backdoorTestSize: backdoorTest?.images.labels.length ?? 0 },
  };
  return {
    model: await saveModel(result.classifier),
    // the classifier's epochs; earlier phases (Input-Aware's mask generator) come with their own histories
    history: result.history,
    ...(result.phaseHistories ? { phaseHistories: result.phaseHistories } : {}),
    seconds: host.seconds(),
    ...host.resumeInfo(),
    data: refs,
  };
}

/** Protection mode with the user's trained model as f_std. */
export async function importStandardModel(input: { config: unknown; data: DataRefs }): Promise<TrainedModel> {
  return configActivity(input, async (cfg, host) => {
    const spec = cfg.standardModel!;
    const model = host.scope.classifier(await importLayersModel(await host.localFile(spec.layersModel), spec.inputRange));
    const s = input.data.summary;
    const [h, w, c] = model.meta.inputShape;
    if (h !== s.shape[0] || w !== s.shape[1] || c !== s.shape[2] || model.meta.numClasses !== s.numClasses) {
      throw new ModelFormatError(
        `standardModel: expects ${h}x${w}x${c} inputs and ${model.meta.numClasses} classes, the training set has ${s.shape.join('x')} and ${s.numClasses}`,
      );
    }
    return { model: await saveModel(model), history: [], seconds: host.seconds(), resumedFromEpoch: 0, skippedCheckpoints: [] };
  });
}

export async function computeNonTargetLabels(input: StandardInput): Promise<{ labels: ArtifactRef; seconds: number; cached?: boolean }> {
  return stageActivity(nonTargetLabelsStage, input, async (cfg, host) => {
    const targets = await nonTargetLabelStage(cfg, await host.model(input.standard), await loadDataset(input.data.train));
    return { labels: await artifactStore().put(encodeNtTargets(targets)), seconds: host.seconds() };
  });
}

export async function trainTeacher(input: StandardInput): Promise<TrainedModel> {
  return stageActivity(teacherTrainingStage, input, async (cfg, host) => {
    const train = await loadDataset(input.data.train);
    return trainedModel(host, await runTeacherTrainingStage(cfg, await host.model(input.standard), train, host));
  });
}

export async function trainNonTargetStudent(input: NtStudentInput): Promise<TrainedModel> {
  return stageActivity(ntTrainingStage, input, async (cfg, host) => {
    const train = await loadDataset(input.data.train);
    const targets = decodeNtTargets(await artifactStore().get(input.labels), input.labels.uri);
    return trainedModel(host, await ntStudentStage(cfg, await host.model(input.standard), train, targets, host));
  });
}

/** The test sets an ML-style stage samples for its per-epoch diagnostics. */
async function diagnosticSets(data: DataRefs) {
  return {
    test: data.test ? await loadDataset(data.test) : undefined,
    backdoorTest: data.backdoorTest ? await loadBackdoorTest(data.backdoorTest) : undefined,
  };
}

export async function mutualLearning(input: MutualLearningInput): Promise<MutualLearningOutput> {
  return stageActivity(mutualLearningStage, input, async (cfg, host) => {
    const models = { student: await host.model(input.student), teacher: await host.model(input.teacher) };
    const data = {
      cleanFit: await loadDataset(input.data.cleanFit),
      cleanHeldOut: await loadDataset(input.data.cleanHeldOut),
      ...(await diagnosticSets(input.data)),
    };
    const result = await runMutualLearningStage(cfg, models, data, input.refitEpochs, host);
    const refs = { model: await saveModel(models.student), teacher: await saveModel(models.teacher) };
    return { ...refs, history: result.history, seconds: host.seconds(), ...host.resumeInfo(), selectedEpoch: result.selectedEpoch };
  });
}

export async function planSplit(input: SplitPlanInput): Promise<SplitPlanOutput> {
  return stageActivity(splitPlanStage, input, async (cfg, host) => {
    const models = { teacher: () => host.model(input.teacher), student: await host.model(input.student), standard: await host.model(input.standard) };
    const clean = concatDatasets(await loadDataset(input.data.cleanFit), await loadDataset(input.data.cleanHeldOut), 'clean set (fit + held-out)');
    const plan = await runSplitPlanStage(cfg, models, await loadDataset(input.data.train), clean);
    return {
      summary: splitSummary(plan),
      kept: await saveJson(Array.from(plan.kept)),
      estimatedTarget: plan.estimatedTarget,
      excess: plan.excess,
      keptFraction: plan.keptFraction,
      tiedClasses: plan.tiedClasses,
      seconds: host.seconds(),
    };
  });
}

export async function splitDistillation(input: SplitDistillationInput): Promise<SplitDistillationOutput> {
  return stageActivity(splitDistillationStage, input, async (cfg, host) => {
    const models = { student: await host.model(input.student), standard: await host.model(input.standard) };
    const data = {
      train: await loadDataset(input.data.train),
      kept: Int32Array.from(await loadJson<number[]>(input.kept)),
      cleanHeldOut: await loadDataset(input.data.cleanHeldOut),
      ...(await diagnosticSets(input.data)),
    };
    const poison = input.data.poison;
    const groups = poison
      ? { poisoned: await loadJson<number[]>(poison.poisonedIndices), noise: poison.crossIndices ? await loadJson<number[]>(poison.crossIndices) : undefined }
      : undefined;
    const result = await runSplitDistillationStage(cfg, models, data, input.refitEpochs, host, { target: input.target, groups });
    return { model: await saveModel(models.student), history: result.history, seconds: host.seconds(), ...host.resumeInfo(), selectedEpoch: result.selectedEpoch };
  });
}

export async function evaluateModels(input: { data: DataRefs; models: Record<string, ArtifactRef> }): Promise<Record<string, Metrics>> {
  return activity(async (host) => {
    const test = input.data.test ? await loadDataset(input.data.test) : undefined;
    const backdoor = input.data.backdoorTest ? await loadBackdoorTest(input.data.backdoorTest) : undefined;
    const out: Record<string, Metrics> = {};
    for (const [name, ref] of Object.entries(input.models)) {
      const model = await host.model(ref);
      out[name] = await evaluateClassifier(model, test, backdoor);
      host.scope.release(model.model);
      Context.current().heartbeat({ stage: 'evaluation', model: name });
    }
    return out;
  });
}
