/**
 * Builds the data a purification run works on. Evaluation mode: load clean data, draw the
 * clean budget D_c first (stratified, inside the clean reserve), and hand the attacker only
 * the rest: the training set that standard training sees is the loaded split minus the
 * reserve, so D_c and its held-out slice are the defender's own data and no training stage
 * has seen them (protocol: a held-out score on images f_std memorised selects nothing).
 * Protection mode: take the user's training set and clean set as they are. Either way D_c is
 * split into a fitting part and a held-out slice for selection.
 */
import { promises as fs } from 'node:fs';
import { deriveSeed } from '../rng';
import { type ImageDataset, subsetDataset, validateDataset, DatasetError } from '../data/dataset';
import { loadCifar10, loadCifar10Batch } from '../data/cifar10';
import { loadFashionMnist, loadIdxPair, toRgb32 } from '../data/idx';
import { generateSyntheticSplits } from '../data/synthetic';
import { loadImageFolder } from '../data/imageFolder';
import { loadGtsrb } from '../data/gtsrb';
import { decodeDataset } from '../data/codec';
import { drawCleanBudget, splitHeldOut, SplitError, stratifiedSubset } from '../data/splits';
import { capCleanSet } from '../data/cleanCap';
import { controlsTraining, getAttack, validateAttackAgainst, type AttackConfig } from '../attacks/registry';
import type { PrepareControl } from '../attacks/attack';
import { buildBackdoorTestSet, type BackdoorTestSet } from '../attacks/testSet';
import type { PoisonRecord } from '../attacks/base';
import type { PurifyConfig, DatasetFile, EvaluationData } from '../../schemas/purify';

export interface PreparedData {
  /**
   * The training set standard training sees (poisoned in evaluation mode). In evaluation mode
   * it holds only the loaded split's images outside the clean reserve, in their original order.
   */
  train: ImageDataset;
  cleanFit: ImageDataset;
  cleanHeldOut: ImageDataset;
  test?: ImageDataset;
  backdoorTest?: BackdoorTestSet;
  /** `poisonedIndices` are positions in `train` */
  poison?: PoisonRecord & { poisonedIndices: number[]; crossIndices?: number[] };
  /**
   * Training-controlled attacks (Input-Aware, WaNet's default mode): nothing is poisoned here; the attacker's
   * training run (the standard-training stage) poisons these indices as it trains.
   */
  trainingControlled?: { attack: AttackConfig; eligibleIndices: number[]; attackSeed: number };
  /**
   * Evaluation mode: where each record came from, as indices into the loaded training split
   * (after the tier's subset), ascending. `train[k]` is record `training[k]`. Kept so that a
   * stored run can show that no clean-budget image reached a training stage.
   */
  sourceIndices?: SourceIndices;
  summary: DataSummary;
}

export interface SourceIndices {
  training: number[];
  cleanFit: number[];
  cleanHeldOut: number[];
}

export interface DataSummary {
  source: string;
  trainSize: number;
  cleanBudget: number;
  /** evaluation mode: the clean pool that D_c is drawn from, outside the training set */
  cleanReserve?: number;
  /**
   * true when the clean set is disjoint from the training set by construction (evaluation
   * mode: the reserve is taken out before the attacker's training set is formed); absent in
   * protection mode, where the user supplies both.
   */
  cleanSetOutsideTraining?: boolean;
  cleanFit: number;
  cleanHeldOut: number;
  testSize: number;
  backdoorTestSize: number;
  poisonedCount: number;
  /** a learned trigger taken from an earlier run instead of optimised here: whose (the activity sets it) */
  triggerReusedFrom?: string;
  shape: [number, number, number];
  numClasses: number;
}

/** Resolves a location (path or URI) to a local file path; the activity layer supplies S3. */
export type LocalFile = (location: string) => Promise<string>;
/** A local path or file:// URI as a path; undefined for any other URI (s3://, https://, ...). */
function localPathOf(location: string): string | undefined {
  if (location.startsWith('file://')) return new URL(location).pathname;
  return /^[a-z][a-z0-9+.-]*:\/\//i.test(location) ? undefined : location;
}
const localOnly: LocalFile = async (location) => {
  const local = localPathOf(location);
  if (local === undefined) throw new DatasetError(`${location}: only local paths can be read here`);
  return local;
};

/** The clean splits evaluation mode loads (before the clean reserve and the poisoning); bench/cleanCounterpart.ts reuses them. */
export async function loadEvaluationData(data: EvaluationData, seed: number): Promise<{ train: ImageDataset; test: ImageDataset; source: string }> {
  switch (data.format) {
    case 'synthetic': {
      const { train, test } = generateSyntheticSplits({ ...data, seed: deriveSeed(seed, 'synthetic') });
      return { train, test, source: `synthetic (generated, ${data.trainSize} train / ${data.testSize} test)` };
    }
    case 'cifar10': {
      let train = await loadCifar10(data.path, 'train');
      const test = await loadCifar10(data.path, 'test');
      if (data.trainSubset) train = stratifiedSubset(train, data.trainSubset, deriveSeed(seed, 'subset'));
      return { train, test, source: `CIFAR-10 (${data.path}${data.trainSubset ? `, ${data.trainSubset}-image subset` : ''})` };
    }
    case 'fashionMnist': {
      let train = await loadFashionMnist(data.path, 'train');
      let test = await loadFashionMnist(data.path, 'test');
      if (data.trainSubset) train = stratifiedSubset(train, data.trainSubset, deriveSeed(seed, 'subset'));
      if (data.rgb32) [train, test] = [toRgb32(train), toRgb32(test)];
      return { train, test, source: `Fashion-MNIST (${data.path ?? 'default location'})` };
    }
    case 'gtsrb': {
      let train = await loadGtsrb(data.path, 'train', data.size);
      const test = await loadGtsrb(data.path, 'test', data.size);
      if (data.trainSubset) train = stratifiedSubset(train, data.trainSubset, deriveSeed(seed, 'subset'));
      return { train, test, source: `GTSRB (${data.path}, ${data.size}x${data.size}${data.trainSubset ? `, ${data.trainSubset}-image subset` : ''})` };
    }
    case 'imageFolder': {
      const common = { size: data.size, channels: data.channels };
      let train = await loadImageFolder(data.train.dir, { ...common, labels: data.train.labels, classes: data.classes, field: 'data.train' });
      // the test split is numbered by the training split's classes, so a class missing from one keeps its label
      const test = await loadImageFolder(data.test.dir, {
        ...common,
        labels: data.test.labels,
        classes: data.classes ?? train.classNames,
        numClasses: train.classNames ? undefined : train.numClasses,
        field: 'data.test',
      });
      if (test.numClasses > train.numClasses) {
        throw new DatasetError(`data.test: has class ${test.numClasses - 1}, but the training split has only ${train.numClasses} classes`);
      }
      if (data.trainSubset) train = stratifiedSubset(train, data.trainSubset, deriveSeed(seed, 'subset'));
      return { train, test, source: `image folders (${data.train.dir}, ${data.test.dir}, ${data.size}x${data.size})` };
    }
  }
}

export async function loadDatasetFile(file: DatasetFile, localFile: LocalFile = localOnly, field = 'dataset'): Promise<ImageDataset> {
  switch (file.format) {
    case 'ntml': {
      const path = await localFile(file.location);
      const ds = decodeDataset(new Uint8Array(await readFileOr(path, field)), `${field} (${file.location})`);
      return ds;
    }
    case 'cifar10Batch':
      return loadCifar10Batch(await localFile(file.location));
    case 'idx':
      return loadIdxPair(await localFile(file.images), await localFile(file.labels), { numClasses: file.numClasses });
    case 'imageFolder': {
      const dir = localPathOf(file.dir);
      if (dir === undefined) {
        throw new DatasetError(`${field}.dir: ${file.dir}: an image folder must be a local folder of the workers (pack it into an .ntds file to read it from S3)`);
      }
      const labels = file.labels ? await localFile(file.labels) : undefined;
      return loadImageFolder(dir, { size: file.size, channels: file.channels, labels, classes: file.classes, numClasses: file.numClasses, field });
    }
  }
}

async function readFileOr(path: string, field: string): Promise<Buffer> {
  try {
    return await fs.readFile(path);
  } catch (err) {
    throw new DatasetError(`${field}: cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? err})`);
  }
}

function splitClean(ds: ImageDataset, cleanIndices: Int32Array, fraction: number, seed: number) {
  const { fit, heldOut } = splitHeldOut(cleanIndices, ds.labels, fraction, deriveSeed(seed, 'heldOut'));
  if (fit.length < 2 || heldOut.length < 1) {
    throw new DatasetError(
      `cleanBudget: ${cleanIndices.length} clean samples leave ${fit.length} for fitting and ${heldOut.length} held out; need at least 2 and 1`,
    );
  }
  return {
    cleanFit: subsetDataset(ds, fit, `${ds.name}:clean-fit`),
    cleanHeldOut: subsetDataset(ds, heldOut, `${ds.name}:clean-held-out`),
    fit,
    heldOut,
  };
}

/**
 * The attacker's training set: the loaded split without the clean reserve. Poisoning and
 * every training stage see only these records; `restIndices` excludes the whole reserve, so
 * D_c at any budget up to the reserve (and its held-out slice) stays outside.
 */
function trainingSetOutsideReserve(clean: ImageDataset, restIndices: Int32Array): { training: ImageDataset; all: Int32Array } {
  if (restIndices.length < 2) {
    throw new SplitError(
      'cleanReserve',
      `the clean reserve takes ${clean.labels.length - restIndices.length} of ${clean.labels.length} training images, leaving ${restIndices.length} to train on; need at least 2`,
    );
  }
  const training = subsetDataset(clean, restIndices, `${clean.name}:training`);
  return { training, all: Int32Array.from({ length: restIndices.length }, (_, k) => k) };
}

/** `control`: cancellation and checkpoints of a learned trigger's optimisation (Narcissus), if the attack has one. */
/** The file (or folder) a data set's labels are read from, for error messages. */
function labelSource(f: DatasetFile): string {
  if (f.format === 'imageFolder') return f.labels ?? f.dir;
  return f.format === 'idx' ? f.labels : f.location;
}

export async function prepareData(cfg: PurifyConfig, localFile: LocalFile = localOnly, control?: PrepareControl): Promise<PreparedData> {
  const fraction = cfg.ntml.heldOutFraction;
  if (cfg.mode === 'evaluation') {
    const attack = cfg.attack as AttackConfig;
    const { train: clean, test, source } = await loadEvaluationData(cfg.data!, cfg.seed);
    const draw = drawCleanBudget(clean, cfg.cleanBudget, cfg.seed, cfg.cleanReserve);
    const attackSeed = deriveSeed(cfg.seed, 'attack');
    const plugin = getAttack(attack.name);
    const { training, all } = trainingSetOutsideReserve(clean, draw.restIndices);
    // the poisoning rate is a fraction of the training set the attacker supplies
    validateAttackAgainst(attack, training);
    if (controlsTraining(attack)) return trainingControlledData(cfg, clean, training, test, source, draw, attackSeed);
    // learned triggers (Narcissus) are computed first, from the attacker's data only; fixed triggers have no preparePoison
    const learned = plugin.preparePoison ? (control?.learnedTrigger ?? (await plugin.preparePoison(training, all, attack, attackSeed, control))) : undefined;
    const poisoned = plugin.poisonTrainingSet(training, all, attack, attackSeed, learned);
    const backdoorTest = buildBackdoorTestSet(test, attack, attackSeed, poisoned.record.triggerParameters);
    return {
      train: poisoned.dataset,
      ...evaluationCleanSets(cfg, clean, training, test, source, draw, { backdoorTestSize: backdoorTest.images.labels.length, poisonedCount: poisoned.poisonedIndices.length }),
      test,
      backdoorTest,
      poison: {
        ...poisoned.record,
        poisonedIndices: Array.from(poisoned.poisonedIndices),
        // WaNet's noise-mode inputs: split distillation's diagnostics report them apart
        ...(poisoned.crossIndices ? { crossIndices: Array.from(poisoned.crossIndices) } : {}),
      },
    };
  }
  const train = await loadDatasetFile(cfg.trainingSet!, localFile, 'trainingSet');
  const clean = capCleanSet(await loadDatasetFile(cfg.cleanSet!, localFile, 'cleanSet'), cfg.cleanBudget, cfg.seed);
  const test = cfg.testSet ? await loadDatasetFile(cfg.testSet, localFile, 'testSet') : undefined;
  for (const [field, ds] of [['trainingSet', train], ['cleanSet', clean], ['testSet', test]] as const) {
    if (!ds) continue;
    validateDataset(ds, field);
    if (ds.height !== train.height || ds.width !== train.width || ds.channels !== train.channels) {
      throw new DatasetError(
        `${field}: ${ds.height}x${ds.width}x${ds.channels} with ${ds.numClasses} classes does not match trainingSet (${train.height}x${train.width}x${train.channels}, ${train.numClasses} classes)`,
      );
    }
    if (ds.numClasses !== train.numClasses) {
      // the class count comes from the highest label, so a count that differs is most often one
      // label out of range: say where the labels were read, not only the two counts
      throw new DatasetError(
        `${field}: labels 0-${ds.numClasses - 1} in ${labelSource(cfg[field]!)}, but trainingSet has ${train.numClasses} classes (0-${train.numClasses - 1}): ` +
          'a label out of range, or a class missing from one set (numClasses: N on an imageFolder set checks each label where it is read)',
      );
    }
    // folder names are what numbers an image folder's classes: two folders sorted apart label differently
    const folders = (f: DatasetFile | undefined) => f?.format === 'imageFolder';
    if (folders(cfg[field]) && folders(cfg.trainingSet) && ds.classNames && train.classNames && ds.classNames.join('\n') !== train.classNames.join('\n')) {
      throw new DatasetError(
        `${field}: class folders ${ds.classNames.join(', ')} differ from trainingSet's ${train.classNames.join(', ')}; list them in the same order with \`classes\` on both`,
      );
    }
  }
  const all = Int32Array.from({ length: clean.labels.length }, (_, i) => i);
  const { cleanFit, cleanHeldOut } = splitClean(clean, all, fraction, cfg.seed);
  return {
    train,
    cleanFit,
    cleanHeldOut,
    test,
    summary: {
      source: `user data (${describe(cfg.trainingSet!)})`,
      trainSize: train.labels.length,
      cleanBudget: clean.labels.length,
      cleanFit: cleanFit.labels.length,
      cleanHeldOut: cleanHeldOut.labels.length,
      testSize: test?.labels.length ?? 0,
      backdoorTestSize: 0,
      poisonedCount: 0,
      shape: [train.height, train.width, train.channels],
      numClasses: train.numClasses,
    },
  };
}

/** The attacker's (clean) training set, every record of which its training run may poison. */
function trainingControlledData(
  cfg: PurifyConfig,
  clean: ImageDataset,
  training: ImageDataset,
  test: ImageDataset,
  source: string,
  draw: CleanBudgetDraw,
  attackSeed: number,
): PreparedData {
  return {
    train: training,
    // the poisoning counts are known once the attacker's training run has materialised its poisoned set
    ...evaluationCleanSets(cfg, clean, training, test, source, draw, { backdoorTestSize: 0, poisonedCount: 0 }),
    test,
    trainingControlled: { attack: cfg.attack as AttackConfig, eligibleIndices: Array.from({ length: training.labels.length }, (_, k) => k), attackSeed },
  };
}

type CleanBudgetDraw = ReturnType<typeof drawCleanBudget>;

/**
 * Evaluation mode's clean sets, whoever poisons the training set: D_c split into its fitting and
 * held-out parts, where every record came from (indices into the loaded split), and the summary.
 */
function evaluationCleanSets(
  cfg: PurifyConfig,
  clean: ImageDataset,
  training: ImageDataset,
  test: ImageDataset,
  source: string,
  { cleanIndices, restIndices, reserveSize }: CleanBudgetDraw,
  poisoning: Pick<DataSummary, 'backdoorTestSize' | 'poisonedCount'>,
): Pick<PreparedData, 'cleanFit' | 'cleanHeldOut' | 'sourceIndices' | 'summary'> {
  const { cleanFit, cleanHeldOut, fit, heldOut } = splitClean(clean, cleanIndices, cfg.ntml.heldOutFraction, cfg.seed);
  return {
    cleanFit,
    cleanHeldOut,
    sourceIndices: { training: Array.from(restIndices), cleanFit: Array.from(fit), cleanHeldOut: Array.from(heldOut) },
    summary: {
      source,
      trainSize: training.labels.length,
      cleanBudget: cleanIndices.length,
      cleanReserve: reserveSize,
      cleanSetOutsideTraining: true,
      cleanFit: cleanFit.labels.length,
      cleanHeldOut: cleanHeldOut.labels.length,
      testSize: test.labels.length,
      backdoorTestSize: poisoning.backdoorTestSize,
      poisonedCount: poisoning.poisonedCount,
      shape: [clean.height, clean.width, clean.channels],
      numClasses: clean.numClasses,
    },
  };
}

function describe(f: DatasetFile): string {
  return f.format === 'idx' ? f.images : f.format === 'imageFolder' ? f.dir : f.location;
}
