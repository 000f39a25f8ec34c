/**
 * `attack.epochs`, the length of a training-controlled attacker's own run (issue 19, item 5):
 * accepted for WaNet (mode trainingControlled) and Input-Aware, refused with the field named for
 * every poison-only attack; the run is the tier's recipe with its schedule stretched over the new
 * length; configs without it parse, hash and key exactly as before the field existed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type * as TF from '@tensorflow/tfjs-node';

import { ConfigError, parsePurifyConfig, type PurifyConfigInput } from '../../schemas/purify';
import { canonical, expandSweep, parseSweepSpec } from '../../schemas/sweep';
import { AttackConfigError, parseAttackConfig } from '../../core/attacks/registry';
import { attackerRecipe } from '../../core/attacks/attackerRecipe';
import { trainWanetBackdoor } from '../../core/attacks/wanetTraining';
import { disposeInputAwareGenerators, trainInputAwareBackdoor } from '../../core/attacks/inputAwareTraining';
import { unregisterInputAwareGenerators } from '../../core/attacks/inputAware';
import { stageKey } from '../../activities/stageCache';
import { defenseStage, ntTrainingStage, standardTrainingStage, teacherTrainingStage } from '../../activities/stageDeclarations';
import { generateSyntheticDataset } from '../../core/data/synthetic';
import { createClassifier } from '../../core/models/layersFormat';
import { disposeClassifier } from '../../core/models/classifier';
import { TrainRecipe } from '../../core/train/recipe';
import { learningRateAt } from '../../core/train/sgd';
import type { DataRefs } from '../../workflows/contract';

const evaluation = (attack: unknown, over: Partial<PurifyConfigInput> = {}) =>
  ({ mode: 'evaluation', tier: 'cpu', data: { format: 'synthetic' }, attack, ...over }) as PurifyConfigInput;

function issuesOf(raw: PurifyConfigInput): string[] {
  try {
    parsePurifyConfig(raw);
  } catch (e) {
    assert.ok(e instanceof ConfigError, String(e));
    return e.issues;
  }
  assert.fail(`accepted: ${JSON.stringify(raw)}`);
}

test('attack.epochs: accepted for the training-controlled attacks, a positive integer', () => {
  const tc = parsePurifyConfig(evaluation({ name: 'wanet', epochs: 16 }));
  assert.equal(tc.attack!.name === 'wanet' && tc.attack!.epochs, 16);
  assert.equal(tc.training.epochs, 8, "the defender's recipe keeps the tier's epochs");
  const explicit = parsePurifyConfig(evaluation({ name: 'wanet', mode: 'trainingControlled', epochs: 24 }));
  assert.equal(explicit.attack!.name === 'wanet' && explicit.attack!.epochs, 24);
  const iad = parsePurifyConfig(evaluation({ name: 'inputaware', epochs: 3 }));
  assert.equal(iad.attack!.name === 'inputaware' && iad.attack!.epochs, 3);
  for (const bad of [0, -2, 1.5, '16', null]) {
    const issues = issuesOf(evaluation({ name: 'wanet', epochs: bad }));
    assert.equal(issues.length, 1, issues.join('\n'));
    assert.match(issues[0], /^attack\.epochs: /, `epochs ${JSON.stringify(bad)}: ${issues[0]}`);
  }
  assert.throws(() => parseAttackConfig({ name: 'inputaware', epochs: 0 }), (e: unknown) => e instanceof AttackConfigError && e.field === 'epochs');
});

test('attack.epochs: refused for every poison-only attack, naming the field and why', () => {
  for (const attack of [
    { name: 'badnets', epochs: 16 },
    { name: 'blended', epochs: 16 },
    { name: 'sig', epochs: 16 },
    { name: 'narcissus', epochs: 16 },
    { name: 'wanet', mode: 'poisonOnly', epochs: 16 },
  ]) {
    const issues = issuesOf(evaluation(attack));
    assert.equal(issues.length, 1, issues.join('\n'));
    assert.match(issues[0], /^attack\.epochs: not allowed: a poison-only attack .*the defender's standard training \(training\.epochs\)/, `${JSON.stringify(attack)}: ${issues[0]}`);
    // the attack registry's own parse names it too (the CLI's attack commands use it)
    assert.throws(() => parseAttackConfig(attack as { name: 'badnets' }), (e: unknown) => e instanceof AttackConfigError && e.field === 'epochs' && /poison-only/.test(e.message));
  }
  // the same attacks without it, and poisonOnly WaNet without it, are fine
  for (const name of ['badnets', 'blended', 'sig', 'narcissus'] as const) parsePurifyConfig(evaluation({ name }));
  parsePurifyConfig(evaluation({ name: 'wanet', mode: 'poisonOnly' }));
  // a sweep cell names its cell and the field
  assert.throws(
    () => expandSweep(parseSweepSpec({ name: 's', base: evaluation({ name: 'badnets' }), grid: { attack: [{ name: 'wanet', epochs: 16 }, { name: 'badnets', epochs: 16 }] } })),
    (e: unknown) => e instanceof ConfigError && e.issues.length === 1 && /^cell badnets\/.*: attack\.epochs: not allowed/.test(e.issues[0]),
  );
});

test('attack.epochs: configs without it parse to the canonical configs of the commit before the field (cell ids and stage keys unchanged)', () => {
  // canonical(parsed.attack) printed by the parent commit (58431f5) for each attack's defaults: a
  // field that appeared in the parsed config, even as a default, would change every cell id and
  // every cache key that reads `attack` (prepareData, standardTraining) of the stored bench state
  const before: Array<[unknown, string]> = [
    [{ name: 'badnets' }, '{"labelMap":"allToOne","name":"badnets","patchSize":3,"rate":0.1,"target":0}'],
    [{ name: 'blended' }, '{"alpha":0.2,"labelMap":"allToOne","name":"blended","patternSeed":0,"rate":0.1,"target":0}'],
    [{ name: 'sig' }, '{"delta":40,"frequency":6,"labelMap":"allToOne","name":"sig","rate":0.1,"target":0}'],
    [{ name: 'wanet' }, '{"augment":{"padding":5,"rotation":10},"crossRatio":2,"k":4,"labelMap":"allToOne","mode":"trainingControlled","name":"wanet","rate":0.1,"s":0.5,"target":0}'],
    [{ name: 'wanet', mode: 'poisonOnly' }, '{"augment":{"padding":5,"rotation":10},"crossRatio":2,"k":4,"labelMap":"allToOne","mode":"poisonOnly","name":"wanet","rate":0.1,"s":0.5,"target":0}'],
    [
      { name: 'narcissus' },
      '{"augment":{"flip":true,"padding":4},"batchSize":128,"labelMap":"allToOne","linfRadius":0.06274509803921569,"name":"narcissus","pood":{"format":"auto"},"rate":0.0005,"surrogateArch":"smallCnn","surrogateEpochs":5,"surrogateLearningRate":0.05,"target":0,"testMultiplier":3,"triggerLearningRate":0.01,"triggerRounds":1000,"triggerStep":"sign","warmupLearningRate":0.1,"warmupRounds":5}',
    ],
    [
      { name: 'inputaware' },
      '{"crossRatio":1,"diversityWeight":1,"generatorChannels":[32,64,128],"generatorLearningRate":0.01,"labelMap":"allToOne","maskDensity":0.032,"maskEpochs":25,"maskLearningRate":0.01,"maskNormWeight":100,"name":"inputaware","rate":0.1,"target":0}',
    ],
  ];
  for (const [attack, expected] of before) {
    const parsed = parsePurifyConfig(evaluation(attack)).attack!;
    assert.ok(!('epochs' in parsed), `${JSON.stringify(attack)}: no epochs key in the parsed config`);
    assert.equal(canonical(parsed), expected, JSON.stringify(attack));
  }

  // cell ids: with it, a cell of its own per length; without it, the id of the config as written before
  const spec = (attacks: unknown[]) =>
    parseSweepSpec({ name: 'ids', base: evaluation(undefined, { defense: { name: 'none' } }), grid: { attack: attacks, seed: [1] } });
  const ids = expandSweep(spec([{ name: 'wanet' }, { name: 'wanet', epochs: 16 }, { name: 'wanet', epochs: 24 }])).map((c) => c.id);
  assert.equal(new Set(ids).size, 3);
  assert.deepEqual(expandSweep(spec([{ name: 'wanet', epochs: undefined }])).map((c) => c.id), [ids[0]], 'an absent epochs is the plain config');
  assert.deepEqual(expandSweep(spec([{ name: 'wanet', mode: 'trainingControlled' }])).map((c) => c.id), [ids[0]]);
});

test("attack.epochs: the attacker's stage key changes with it; stages that do not read the attack do not", () => {
  const ref = (c: string) => ({ uri: `s3://b/cas/${c}`, sha256: c.repeat(64).slice(0, 64), bytes: 10 });
  const data: DataRefs = { train: ref('a'), cleanFit: ref('b'), cleanHeldOut: ref('c'), test: ref('d'), summary: {} as DataRefs['summary'] };
  const input = { config: {}, data, standard: ref('s'), labels: ref('l'), backdoored: ref('m') };
  const cfg = (epochs?: number) => parsePurifyConfig(evaluation({ name: 'wanet', epochs }));
  const plain = stageKey(standardTrainingStage, cfg(), input);
  assert.ok(standardTrainingStage.reads.includes('attack'), 'the attacker run declares the attack among its reads');
  assert.equal(stageKey(standardTrainingStage, parsePurifyConfig(evaluation({ name: 'wanet' })), input), plain);
  const k16 = stageKey(standardTrainingStage, cfg(16), input);
  assert.notEqual(k16, plain);
  assert.notEqual(stageKey(standardTrainingStage, cfg(24), input), k16);
  // the defender's stages after the attacker's run see it only through their inputs
  for (const stage of [teacherTrainingStage, ntTrainingStage, defenseStage] as const) {
    assert.equal(stageKey(stage as typeof ntTrainingStage, cfg(16), input), stageKey(stage as typeof ntTrainingStage, cfg(), input), stage.stage);
  }
});

test('attackerRecipe: only the epochs change; absent, the recipe itself', () => {
  const recipe = TrainRecipe.parse({ epochs: 8, batchSize: 128, learningRate: 0.2, schedule: 'oneCycle', nesterov: true, warmupFraction: 0.25 });
  assert.equal(attackerRecipe({}, recipe), recipe);
  assert.deepEqual(attackerRecipe({ epochs: 24 }, recipe), { ...recipe, epochs: 24 });
  assert.equal(recipe.epochs, 8, 'the tier recipe is not modified');
  assert.throws(() => attackerRecipe({ epochs: 0 }, recipe), /attack\.epochs/);
});

function weightsOf(model: TF.LayersModel): Float32Array[] {
  return model.getWeights().map((t) => Float32Array.from(t.dataSync() as Float32Array));
}

test("wanet attacker run: epochs x batches steps on the recipe's schedule stretched over them, the same run as a recipe of that length", { timeout: 300_000 }, async () => {
  // 96 images, batch 32: 3 batches per epoch; the tier's recipe has 1 epoch, the attacker sets 3
  const ds = generateSyntheticDataset({ size: 96, seed: 4, height: 8, width: 8 });
  const all = Int32Array.from({ length: 96 }, (_, i) => i);
  const tier = TrainRecipe.parse({ epochs: 1, batchSize: 32, learningRate: 0.2, schedule: 'oneCycle', nesterov: true, warmupFraction: 0.25, augment: { padding: 1, flip: false } });
  const attack = parseAttackConfig({ name: 'wanet', k: 2, s: 1, epochs: 3, augment: { padding: 1 } });
  const run = async (config: typeof attack, recipe: TrainRecipe) => {
    const steps: string[] = [];
    const r = await trainWanetBackdoor({
      train: ds,
      eligibleIndices: all,
      config,
      classifier: createClassifier('tinyCnn', ds, ds.numClasses, 1),
      recipe,
      seed: 5,
      hooks: { onBatch: (epoch, batch, batches) => void steps.push(`${epoch}.${batch}/${batches}`) },
    });
    return { r, steps, weights: weightsOf(r.classifier.model) };
  };
  const longer = await run(attack, tier);
  try {
    assert.equal(longer.steps.length, 3 * 3, `epochs x batches: ${longer.steps.join(' ')}`);
    assert.deepEqual(longer.r.history.map((h) => h.epoch), [1, 2, 3]);
    // the learning rate at each epoch's last step is the schedule over all 9 steps, not a
    // 3-step schedule repeated or followed by more steps at its end
    const spec = { schedule: tier.schedule, warmupFraction: tier.warmupFraction };
    longer.r.history.forEach((h, e) => assert.ok(Math.abs(h.learningRate - learningRateAt(spec, 0.2, e * 3 + 2, 9)) < 1e-12, `epoch ${e + 1}: ${h.learningRate}`));
    assert.ok(longer.r.history[0].learningRate > 0.15, 'after a third of the run the rate is near its peak, not annealed');
    assert.equal(longer.r.totals.backdoor + longer.r.totals.cross + longer.r.totals.clean, 3 * 96, 'every image of every epoch');

    // the same run as the tier's recipe at 3 epochs without attack.epochs: nothing else changed
    const { epochs: _e, ...plain } = attack;
    const same = await run(plain as typeof attack, { ...tier, epochs: 3 });
    try {
      assert.deepEqual(same.weights, longer.weights);
      assert.deepEqual(same.r.totals, longer.r.totals);
    } finally {
      disposeClassifier(same.r.classifier);
    }
    // and not the tier's 1-epoch run
    const short = await run(plain as typeof attack, tier);
    try {
      assert.equal(short.steps.length, 3);
      const shortRate = learningRateAt(spec, 0.2, 2, 3);
      assert.ok(Math.abs(short.r.history[0].learningRate - shortRate) < 1e-12);
      assert.ok(longer.r.history[0].learningRate > shortRate + 0.05, 'the longer run is not the short schedule and then more steps');
    } finally {
      disposeClassifier(short.r.classifier);
    }
  } finally {
    disposeClassifier(longer.r.classifier);
  }
});

test("input-aware attacker run: attack.epochs sets the joint phase's length; the mask phase keeps maskEpochs", { timeout: 300_000 }, async () => {
  const H = 16;
  const ds = generateSyntheticDataset({ size: 64, seed: 6, height: H, width: H });
  const all = Int32Array.from({ length: 64 }, (_, i) => i);
  const config = parseAttackConfig({ name: 'inputaware', maskEpochs: 1, generatorChannels: [4, 4, 4], epochs: 2 });
  const recipe = TrainRecipe.parse({ epochs: 1, batchSize: 32, learningRate: 0.05, augment: { padding: 1, flip: false } });
  const phases: string[] = [];
  const r = await trainInputAwareBackdoor({
    train: ds,
    eligibleIndices: all,
    config,
    classifier: createClassifier('tinyCnn', { height: H, width: H, channels: 3 }, ds.numClasses, 1),
    recipe,
    seed: 3,
    hooks: { onBatch: (phase, epoch, batch) => void phases.push(`${phase}${epoch}.${batch}`) },
  });
  try {
    assert.deepEqual(phases, ['mask0.0', 'mask0.1', 'joint0.0', 'joint0.1', 'joint1.0', 'joint1.1']);
    assert.equal(r.maskHistory.length, 1);
    assert.equal(r.history.length, 2);
    const spec = { schedule: recipe.schedule };
    r.history.forEach((h, e) => assert.ok(Math.abs(h.learningRate - learningRateAt(spec, 0.05, e * 2 + 1, 4)) < 1e-12, `joint epoch ${e + 1}`));
  } finally {
    disposeInputAwareGenerators(r.generators);
    unregisterInputAwareGenerators(r.triggerParameters.generatorsId as string);
    disposeClassifier(r.classifier);
  }
});
