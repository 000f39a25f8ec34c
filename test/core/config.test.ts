/**
 * The NT-ML switches and the purify run configuration: defaults as in docs/ntml.md, and
 * every invalid configuration refused with the offending field named.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { NtmlConfig, mlLearningRate } from '../../core/ntml/config';
import { ConfigError, PurifyConfig, parsePurifyConfig } from '../../schemas/purify';

const synthetic = { format: 'synthetic', trainSize: 100, testSize: 20, height: 8, width: 8 } as const;
const evaluation = { data: synthetic, attack: { name: 'badnets' } };
const protection = {
  mode: 'protection',
  trainingSet: { format: 'ntml', location: '/data/train.ntds' },
  cleanSet: { format: 'ntml', location: '/data/clean.ntds' },
} as const;

/** The issues of an invalid config, one `path: message` line each. */
function issuesOf(raw: unknown): string[] {
  try {
    parsePurifyConfig(raw, 'run.yaml');
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err));
    assert.ok(err.message.startsWith('run.yaml is invalid:'), err.message);
    for (const issue of err.issues) assert.ok(err.message.includes(issue));
    return err.issues;
  }
  assert.fail('the config was accepted');
}

function rejects(raw: unknown, ...patterns: RegExp[]): void {
  const issues = issuesOf(raw);
  for (const re of patterns) assert.ok(issues.some((i) => re.test(i)), `no issue matches ${re}: ${JSON.stringify(issues)}`);
}

test('NtmlConfig: the defaults are the documented default variant', () => {
  const cfg = NtmlConfig.parse({});
  assert.deepEqual(cfg, {
    ntLabel: 'soft',
    tau: 1,
    mixEpsilon: 0.5,
    teacher: 'standard',
    studentInit: 'standard',
    ntEpochs: 3,
    ntLearningRate: 0.01,
    ml: 'split',
    lambda: 1,
    mlTau: 1,
    mlEpochs: 60,
    mlBatchSize: 32,
    mlSelect: 'heldOut',
    mlBatchNorm: 'train',
    splitEpochs: 3,
    splitBatchSize: 128,
    splitTarget: 'standard',
    splitSelect: 'last',
    splitTargetSource: 'standard',
    splitGate: 'none',
    splitGateThreshold: 0.5,
    splitStop: 'none',
    splitStopProxyAsr: 0.2,
    splitAnchor: 0,
    splitFallback: 'weakEvidence',
    splitMinEvidence: 0.05,
    heldOutFraction: 0.2,
    refitOnAllClean: false,
    diagnosticSamples: 500,
  });
  assert.equal(mlLearningRate(cfg), 0.01, 'train BN (the default): 0.01');
  assert.equal(mlLearningRate(NtmlConfig.parse({ mlBatchNorm: 'frozen' })), 0.001, 'frozen BN: 0.001');
  assert.equal(mlLearningRate(NtmlConfig.parse({ mlBatchNorm: 'train', mlLearningRate: 0.003 })), 0.003);
});

test('NtmlConfig: every switch accepts its documented values', () => {
  for (const ntLabel of ['soft', 'hard', 'mix', 'negative']) assert.equal(NtmlConfig.parse({ ntLabel }).ntLabel, ntLabel);
  for (const ml of ['split', 'clean', 'oneWay']) assert.equal(NtmlConfig.parse({ ml }).ml, ml);
  for (const mlSelect of ['heldOut', 'last']) assert.equal(NtmlConfig.parse({ mlSelect }).mlSelect, mlSelect);
  assert.equal(NtmlConfig.safeParse({ mlSelect: 'best' }).success, false);
  for (const splitTargetSource of ['standard', 'mutualLearning']) assert.equal(NtmlConfig.parse({ splitTargetSource }).splitTargetSource, splitTargetSource);
  for (const splitGate of ['none', 'drop', 'weight']) assert.equal(NtmlConfig.parse({ splitGate }).splitGate, splitGate);
  for (const splitStop of ['none', 'proxyAsr']) assert.equal(NtmlConfig.parse({ splitStop }).splitStop, splitStop);
  for (const splitFallback of ['weakEvidence', 'never']) assert.equal(NtmlConfig.parse({ splitFallback }).splitFallback, splitFallback);
  for (const bad of [{ splitGateThreshold: 1.5 }, { splitStopProxyAsr: -0.1 }, { splitAnchor: 2 }, { splitMinEvidence: 1.1 }, { splitGate: 'soft' }]) {
    assert.equal(NtmlConfig.safeParse(bad).success, false, JSON.stringify(bad));
  }
  assert.equal(NtmlConfig.parse({ teacher: 'selfDistilled', studentInit: 'scratch', tau: 4, mlTau: 4 }).teacher, 'selfDistilled');
  for (const bad of [{ tau: 0 }, { heldOutFraction: 1 }, { heldOutFraction: 0 }, { lambda: -1 }, { mlEpochs: 1.5 }, { mlBatchSize: 1 }, { mixEpsilon: 1.1 }]) {
    assert.equal(NtmlConfig.safeParse(bad).success, false, JSON.stringify(bad));
  }
});

test('PurifyConfig: evaluation defaults (ci tier: tinyCnn, its recipe, no flips on synthetic gratings, default NT-ML)', () => {
  const cfg = parsePurifyConfig(evaluation);
  assert.equal(cfg.mode, 'evaluation');
  assert.equal(cfg.tier, 'ci');
  assert.equal(cfg.seed, 0);
  assert.equal(cfg.cleanBudget, 100);
  assert.deepEqual(cfg.model, { arch: 'tinyCnn' });
  assert.deepEqual(cfg.training, {
    epochs: 6,
    batchSize: 64,
    learningRate: 0.05,
    momentum: 0.9,
    weightDecay: 5e-4,
    schedule: 'cosine',
    augment: { padding: 4, flip: false },
    batchNorm: 'train',
  });
  assert.deepEqual(cfg.ntml, NtmlConfig.parse({}));
  assert.deepEqual(cfg.attack, { name: 'badnets', target: 0, rate: 0.1, labelMap: 'allToOne', patchSize: 3 });
  assert.deepEqual(cfg.data, { ...synthetic, channels: 3, numClasses: 10 });

  const cpu = parsePurifyConfig({ ...evaluation, tier: 'cpu', data: { format: 'cifar10', path: '/data/cifar' } });
  assert.deepEqual(cpu.model, { arch: 'smallCnn' });
  assert.equal(cpu.training.epochs, 8);
  assert.equal(cpu.training.batchSize, 128);
  assert.deepEqual(cpu.training.augment, { padding: 4, flip: true }, 'natural images are flipped');
});

test('PurifyConfig: a partial training section overrides only the fields it sets', () => {
  const cfg = parsePurifyConfig({ ...evaluation, training: { epochs: 2 } });
  assert.equal(cfg.training.epochs, 2);
  assert.equal(cfg.training.batchSize, 64, 'the ci tier batch size stays');
  assert.deepEqual(cfg.training.augment, { padding: 4, flip: false }, 'synthetic data stays unflipped');
  const more = parsePurifyConfig({ ...evaluation, tier: 'cpu', training: { learningRate: 0.1, batchNorm: 'frozen' } });
  assert.equal(more.training.epochs, 8);
  assert.equal(more.training.batchSize, 128);
  assert.equal(more.training.learningRate, 0.1);
  assert.equal(more.training.batchNorm, 'frozen');
  rejects({ ...evaluation, training: { epochs: 0 } }, /^training\.epochs: /);
  rejects({ ...evaluation, training: { optimizer: 'adam' } }, /^training: .*optimizer/);
});

test('PurifyConfig: invalid values are refused with the field named', () => {
  rejects({ ...evaluation, ntml: { ntLabel: 'inverse' } }, /^ntml\.ntLabel: /);
  rejects({ ...evaluation, ntml: { tau: -1 } }, /^ntml\.tau: /);
  rejects({ ...evaluation, ntml: { ml: 'both', lambda: -2 } }, /^ntml\.ml: /, /^ntml\.lambda: /);
  rejects({ ...evaluation, attack: { name: 'badnets', rate: 1.5 } }, /^attack\.rate: /);
  rejects({ ...evaluation, attack: { name: 'badnets', target: -1 } }, /^attack\.target: /);
  rejects({ ...evaluation, attack: { name: 'trojan' } }, /^attack\.name: /);
  rejects({ ...evaluation, cleanBudget: 0 }, /^cleanBudget: /);
  rejects({ ...evaluation, cleanBudget: 2.5 }, /^cleanBudget: /);
  rejects({ ...evaluation, cleanBudget: { fraction: 1.5 } }, /^cleanBudget/);
  rejects({ ...evaluation, seed: -1 }, /^seed: /);
  rejects({ ...evaluation, name: 'has space' }, /^name: /);
  rejects({ ...evaluation, data: { ...synthetic, height: 4 } }, /^data\.height: /);
  rejects({ ...evaluation, model: { arch: 'vgg' } }, /^model/);
});

test('PurifyConfig: unknown keys are refused, at the top and inside sections', () => {
  rejects({ ...evaluation, epochs: 3 }, /epochs/);
  rejects({ ...evaluation, ntml: { lamda: 2 } }, /^ntml: .*lamda/);
  rejects({ ...evaluation, attack: { name: 'badnets', size: 3 } }, /^attack: .*size/);
});

test('PurifyConfig: refitOnAllClean is a boolean switch, off by default', () => {
  assert.equal(parsePurifyConfig(evaluation).ntml.refitOnAllClean, false);
  assert.equal(parsePurifyConfig({ ...evaluation, ntml: { refitOnAllClean: true } }).ntml.refitOnAllClean, true);
  rejects({ ...evaluation, ntml: { refitOnAllClean: 'yes' } }, /^ntml\.refitOnAllClean/);
});

test('PurifyConfig: each mode requires its inputs and refuses the other mode\'s', () => {
  rejects({ data: synthetic }, /^attack: required/);
  rejects({ attack: { name: 'badnets' } }, /^data: required/);
  rejects({ ...evaluation, trainingSet: protection.trainingSet }, /^trainingSet: not allowed/);
  rejects({ ...evaluation, cleanSet: protection.cleanSet }, /^cleanSet: not allowed/);
  rejects({ ...evaluation, standardModel: { layersModel: '/m/model.json' } }, /^standardModel: not allowed/);

  const ok = parsePurifyConfig({ ...protection, standardModel: { layersModel: '/m/model.json' }, testSet: { format: 'cifar10Batch', location: '/d/test_batch.bin' } });
  assert.equal(ok.mode, 'protection');
  assert.equal(ok.attack, undefined);
  assert.deepEqual(ok.standardModel, { layersModel: '/m/model.json', inputRange: '0-1' });
  assert.equal(ok.training.augment.flip, true);
  rejects({ mode: 'protection', trainingSet: protection.trainingSet }, /^cleanSet: required/);
  rejects({ mode: 'protection', cleanSet: protection.cleanSet }, /^trainingSet: required/);
  rejects({ ...protection, attack: { name: 'badnets' } }, /^attack: not allowed/);
  rejects({ ...protection, data: synthetic }, /^data: not allowed/);
  rejects({ ...protection, cleanSet: { format: 'parquet', location: 'x' } }, /^cleanSet/);
});

test('PurifyConfig: tier "paper" is the BackdoorBench protocol: PreAct-ResNet18, SGD lr 0.01 cosine, wd 5e-4, batch 128, 100 epochs', () => {
  const paper = parsePurifyConfig({ ...evaluation, tier: 'paper' });
  assert.deepEqual(paper.model, { arch: 'preactResnet18' });
  assert.deepEqual(
    { ...paper.training, augment: undefined },
    { epochs: 100, batchSize: 128, learningRate: 0.01, momentum: 0.9, weightDecay: 5e-4, schedule: 'cosine', batchNorm: 'train', augment: undefined },
  );
  assert.equal(parsePurifyConfig({ ...evaluation, tier: 'paper', training: { epochs: 2 } }).training.learningRate, 0.01, 'an override keeps the tier\'s other values');
  rejects({ ...evaluation, tier: 'gpu' }, /^tier: /);
});

test('PurifyConfig: parsing is pure (two parses share no objects)', () => {
  const a = PurifyConfig.parse(evaluation);
  a.ntml.tau = 4;
  a.training.augment.padding = 0;
  const b = PurifyConfig.parse(evaluation);
  assert.equal(b.ntml.tau, 1);
  assert.equal(b.training.augment.padding, 4);
});
