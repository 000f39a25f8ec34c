/**
 * Stage keys come from the declaration alone: a declared field's value changes the key, an
 * undeclared one does not (the stage cannot read it: its config view throws), and a projected
 * read keys only its projection (ML keys `split` and `clean` alike, so those cells share ML).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parsePurifyConfig, type PurifyConfigInput } from '../../schemas/purify';
import { stageKey } from '../../activities/stageCache';
import { mutualLearningStage, nonTargetLabelsStage, standardTrainingStage } from '../../activities/stageDeclarations';
import { declaredView, UndeclaredConfigReadError } from '../../core/pipeline/configReads';
import type { DataRefs } from '../../workflows/contract';

const ref = (c: string) => ({ uri: `s3://b/cas/${c}`, sha256: c.repeat(64).slice(0, 64), bytes: 10 });
const data: DataRefs = { train: ref('a'), cleanFit: ref('b'), cleanHeldOut: ref('c'), test: ref('d'), summary: {} as DataRefs['summary'] };
const cfg = (over: Partial<PurifyConfigInput> = {}) =>
  parsePurifyConfig({ data: { format: 'synthetic' }, attack: { name: 'badnets' }, ...over });
const mlInput = { config: {}, data, student: ref('s'), teacher: ref('t') };

test('a stage key changes with each declared field and input, and with nothing else', () => {
  const base = stageKey(mutualLearningStage, cfg(), mlInput);
  assert.match(base, /^[0-9a-f]{64}$/);
  assert.equal(stageKey(mutualLearningStage, cfg(), mlInput), base, 'deterministic');
  // declared config fields
  assert.notEqual(stageKey(mutualLearningStage, cfg({ ntml: { mlEpochs: 7 } }), mlInput), base);
  assert.notEqual(stageKey(mutualLearningStage, cfg({ ntml: { mlSelect: 'last' } }), mlInput), base);
  assert.notEqual(stageKey(mutualLearningStage, cfg({ seed: 5 }), mlInput), base);
  assert.notEqual(stageKey(mutualLearningStage, cfg({ ntml: { mlLearningRate: 0.5 } }), mlInput), base, 'an optional field set');
  // fields ML does not read: what comes after it
  assert.equal(stageKey(mutualLearningStage, cfg({ ntml: { splitEpochs: 9, refitOnAllClean: true } }), mlInput), base);
  assert.equal(stageKey(mutualLearningStage, cfg({ attack: { name: 'badnets', rate: 0.2 } }), mlInput), base, 'the attack reaches ML only through its inputs');
  // the projection: split and clean share ML, oneWay does not
  assert.equal(stageKey(mutualLearningStage, cfg({ ntml: { ml: 'clean' } }), mlInput), base);
  assert.notEqual(stageKey(mutualLearningStage, cfg({ ntml: { ml: 'oneWay' } }), mlInput), base);
  // inputs and params
  assert.notEqual(stageKey(mutualLearningStage, cfg(), { ...mlInput, teacher: ref('u') }), base);
  assert.notEqual(stageKey(mutualLearningStage, cfg(), { ...mlInput, data: { ...data, backdoorTest: ref('e') } }), base, 'an input that appears');
  assert.notEqual(stageKey(mutualLearningStage, cfg(), { ...mlInput, refitEpochs: 2 }), base);
  assert.equal(stageKey(mutualLearningStage, cfg(), { ...mlInput, student: { ...ref('s'), uri: 's3://elsewhere/x' } }), base, 'digests, not locations');
  // another stage with the same config and inputs has its own key
  assert.notEqual(stageKey(nonTargetLabelsStage, cfg(), { ...mlInput, standard: ref('s') }), stageKey(nonTargetLabelsStage, cfg({ ntml: { tau: 2 } }), { ...mlInput, standard: ref('s') }));
  assert.notEqual(stageKey(standardTrainingStage, cfg(), mlInput), base);
});

test('a stage that reads a field its declaration does not list fails, naming the field', () => {
  const view = declaredView(cfg(), 'nonTargetLabels', nonTargetLabelsStage.reads);
  assert.equal(view.ntml.tau, 1);
  assert.equal(view.ntml.ntLabel, 'soft');
  assert.throws(() => view.ntml.mlEpochs, (err: Error) => err instanceof UndeclaredConfigReadError && /ntml\.mlEpochs/.test(err.message));
  assert.throws(() => view.seed, /read config field seed/);
  assert.throws(() => ({ ...view.ntml }), /read config field ntml,/, 'spreading reads every field');
  assert.throws(() => 'arch' in view.model, /read config field model,/, 'even reaching an undeclared object');
  const train = declaredView(cfg(), 'standardTraining', standardTrainingStage.reads);
  assert.deepEqual({ ...train.training.augment }, { padding: 4, flip: false }, 'under a declared path everything may be read');
  assert.throws(() => {
    (train as { seed: number }).seed = 2;
  }, /only read/);
});
