/**
 * The recipe options issue 19 adds for the cpu tier's candidate recipe: the oneCycle schedule
 * (warm-up, then cosine anneal), Nesterov momentum with PyTorch's semantics on both update
 * paths, and their validation in a purify config. Their defaults leave every existing recipe,
 * and so every stage cache key, unchanged.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { tf } from '../../core/tf';
import { generateSyntheticDataset } from '../../core/data/synthetic';
import { createClassifier } from '../../core/models/layersFormat';
import { SgdMomentum, learningRateAt, ONE_CYCLE_START_DIVISOR } from '../../core/train/sgd';
import { runEpochs } from '../../core/train/epochLoop';
import { noAugmentation } from '../../core/train/augment';
import { parsePurifyConfig, ConfigError, tierRecipe } from '../../schemas/purify';
import { ntStudentRecipe } from '../../core/ntml/stages';

const close = (got: number, want: number, what: string) => assert.ok(Math.abs(got - want) < 1e-9, `${what}: ${got} vs ${want}`);

test('learningRateAt oneCycle: linear warm-up from peak/25 to the peak, then cosine to 0', () => {
  const spec = { schedule: 'oneCycle' as const, warmupFraction: 0.25 };
  const peak = 0.2;
  // 100 steps, 25 of warm-up
  close(learningRateAt(spec, peak, 0, 100), peak / ONE_CYCLE_START_DIVISOR, 'first step');
  close(learningRateAt(spec, peak, 10, 100), peak / 25 + ((peak - peak / 25) * 10) / 25, 'inside the warm-up');
  close(learningRateAt(spec, peak, 25, 100), peak, 'end of the warm-up is the peak');
  // the anneal is cosine over the remaining 75 steps: half way (step 25 + 37.5) is peak / 2
  close(learningRateAt(spec, peak, 25 + 75 / 2, 100), peak / 2, 'half way down');
  close(learningRateAt(spec, peak, 100, 100), 0, 'end');
  close(learningRateAt(spec, peak, 140, 100), 0, 'past the end');
  let previous = Infinity;
  for (let s = 25; s <= 100; s++) {
    const lr = learningRateAt(spec, peak, s, 100);
    assert.ok(lr <= previous + 1e-15, `non-increasing after the warm-up (step ${s})`);
    previous = lr;
  }
  // default warm-up share: 30% (OneCycleLR's pct_start)
  close(learningRateAt({ schedule: 'oneCycle' }, peak, 30, 100), peak, 'default warm-up ends at 30%');
  assert.ok(learningRateAt({ schedule: 'oneCycle' }, peak, 29, 100) < peak);
  // warm-up 0: plain cosine
  for (const s of [0, 13, 50, 99]) close(learningRateAt({ schedule: 'oneCycle', warmupFraction: 0 }, peak, s, 100), learningRateAt('cosine', peak, s, 100), `no warm-up, step ${s}`);
});

test('runEpochs: a oneCycle recipe feeds every step the schedule of its warm-up share', async () => {
  const ds = generateSyntheticDataset({ size: 40, height: 8, width: 8, numClasses: 4, seed: 2 });
  const c = createClassifier('tinyCnn', ds, 4, 1);
  const lrs: number[] = [];
  const result = await runEpochs({
    data: ds,
    epochs: 4,
    batchSize: 10,
    peakLearningRate: 0.1,
    schedule: 'oneCycle',
    warmupFraction: 0.5,
    augment: noAugmentation,
    seed: 1,
    models: { m: c },
    optimizers: {},
    step: (_x, _idx, lr) => {
      lrs.push(lr);
      return tf.scalar(0);
    },
  });
  assert.equal(lrs.length, 16);
  lrs.forEach((lr, s) => close(lr, learningRateAt({ schedule: 'oneCycle', warmupFraction: 0.5 }, 0.1, s, 16), `step ${s}`));
  assert.ok(lrs[0] < lrs[7] && lrs[8] === 0.1 && lrs[15] < lrs[8], 'rises to the peak at step 8, then falls');
  close(result.history[1].learningRate, lrs[7], 'the history records the epoch\'s last rate');
  c.model.dispose();
});

for (const fast of [false, true]) {
  test(`SgdMomentum nesterov (${fast ? 'native' : 'plain'} update): two steps match torch.optim.SGD(nesterov=True); without it, heavy-ball`, () => {
    const mu = 0.9;
    const wd = 0.1;
    const w0 = [1, -2, 0.5];
    const g1 = [0.5, 0.25, -1];
    const g2 = [-0.5, 1, 2];
    const [lr1, lr2] = [0.5, 0.25];
    // torch.optim.SGD, dampening 0: d = g + wd*w; buf = mu*buf + d; d = d + mu*buf (nesterov); w -= lr*d
    const torchSgd = (nesterov: boolean) => {
      let w = w0.slice();
      let buf = [0, 0, 0];
      for (const [g, lr] of [[g1, lr1], [g2, lr2]] as const) {
        const d = w.map((x, i) => g[i] + wd * x);
        buf = buf.map((b, i) => mu * b + d[i]);
        const step = nesterov ? d.map((x, i) => x + mu * buf[i]) : buf;
        w = w.map((x, i) => x - lr * step[i]);
      }
      return { w, buf };
    };
    for (const nesterov of [true, false]) {
      const w = tf.variable(tf.tensor1d(w0));
      const opt = new SgdMomentum([w], { momentum: mu, weightDecay: wd, nesterov, fast });
      const grads1 = [tf.tensor1d(g1)];
      const grads2 = [tf.tensor1d(g2)];
      opt.step(grads1, lr1);
      opt.step(grads2, lr2);
      const want = torchSgd(nesterov);
      const got = w.dataSync();
      want.w.forEach((x, i) => assert.ok(Math.abs(got[i] - x) < 1e-6, `nesterov=${nesterov} w[${i}]: ${got[i]} vs ${x}`));
      const v = opt.state()[0].values;
      want.buf.forEach((x, i) => assert.ok(Math.abs(v[i] - x) < 1e-6, `nesterov=${nesterov} buffer[${i}]: ${v[i]} vs ${x}`));
      tf.dispose([w, ...grads1, ...grads2]);
      opt.dispose();
    }
    // the two rules really differ on this input, so the check above can tell them apart
    assert.ok(Math.abs(torchSgd(true).w[0] - torchSgd(false).w[0]) > 0.1);
  });
}

const cifarLike = { format: 'synthetic', trainSize: 100, testSize: 20, height: 8, width: 8 } as const;

test('purify config: the cpu tier\'s recipe is one-cycle + Nesterov at peak 0.2 (issue 19); overrides change single fields; the ci tier keeps cosine', () => {
  const cpu = parsePurifyConfig({ tier: 'cpu', data: cifarLike, attack: { name: 'badnets' } }).training;
  assert.deepEqual(
    { schedule: cpu.schedule, nesterov: cpu.nesterov, learningRate: cpu.learningRate, warmupFraction: cpu.warmupFraction, epochs: cpu.epochs, batchSize: cpu.batchSize },
    { schedule: 'oneCycle', nesterov: true, learningRate: 0.2, warmupFraction: 0.25, epochs: 8, batchSize: 128 },
  );
  assert.deepEqual(tierRecipe('cpu'), { ...cpu, augment: { padding: 4, flip: true } });
  const lower = parsePurifyConfig({ tier: 'cpu', data: cifarLike, attack: { name: 'badnets' }, training: { learningRate: 0.1 } }).training;
  assert.deepEqual({ ...lower, learningRate: 0.2 }, cpu, 'the tier\'s other values stay');
  // the earlier cpu recipe, asked for by schedule: the tier's warm-up leaves with its schedule
  const cosine = parsePurifyConfig({ tier: 'cpu', data: cifarLike, attack: { name: 'badnets' }, training: { schedule: 'cosine', learningRate: 0.05, nesterov: false } }).training;
  assert.equal(cosine.schedule, 'cosine');
  assert.equal(cosine.warmupFraction, undefined);
  // the ci tier's recipe is unchanged, with exactly its old keys (stage cache keys hash this object)
  const ci = parsePurifyConfig({ tier: 'ci', data: cifarLike, attack: { name: 'badnets' } }).training;
  assert.deepEqual(Object.keys(ci).sort(), ['augment', 'batchNorm', 'batchSize', 'epochs', 'learningRate', 'momentum', 'schedule', 'weightDecay']);
  assert.equal(ci.schedule, 'cosine');
});

test('purify config: a warm-up share without the oneCycle schedule, or out of range, names the field', () => {
  const base = { tier: 'cpu', data: cifarLike, attack: { name: 'badnets' } };
  const issues = (training: unknown) => {
    try {
      parsePurifyConfig({ ...base, training });
    } catch (err) {
      assert.ok(err instanceof ConfigError);
      return err.issues;
    }
    assert.fail(`accepted ${JSON.stringify(training)}`);
  };
  assert.deepEqual(issues({ schedule: 'cosine', warmupFraction: 0.2 }), ['training.warmupFraction: applies to schedule oneCycle only, the schedule is cosine']);
  assert.match(issues({ schedule: 'oneCycle', warmupFraction: 1.5 })[0], /^training\.warmupFraction: /);
  assert.match(issues({ schedule: 'onecycle' })[0], /^training\.schedule: /);
  assert.match(issues({ nesterov: 'yes' })[0], /^training\.nesterov: /);
});

test('NT training from f_std is a cosine fine-tune at ntLearningRate whatever the tier\'s schedule; from scratch it is the full recipe', () => {
  const cfg = parsePurifyConfig({ tier: 'cpu', data: cifarLike, attack: { name: 'badnets' } });
  const nt = ntStudentRecipe(cfg.training, cfg.ntml);
  assert.equal(cfg.training.schedule, 'oneCycle');
  assert.deepEqual(
    { schedule: nt.schedule, nesterov: nt.nesterov, warmupFraction: nt.warmupFraction, learningRate: nt.learningRate, epochs: nt.epochs },
    { schedule: 'cosine', nesterov: undefined, warmupFraction: undefined, learningRate: cfg.ntml.ntLearningRate, epochs: cfg.ntml.ntEpochs },
  );
  assert.equal(nt.batchSize, cfg.training.batchSize);
  assert.deepEqual(nt.augment, cfg.training.augment);
  const scratch = parsePurifyConfig({ tier: 'cpu', data: cifarLike, attack: { name: 'badnets' }, ntml: { studentInit: 'scratch' } });
  assert.deepEqual(ntStudentRecipe(scratch.training, scratch.ntml), scratch.training);
});
