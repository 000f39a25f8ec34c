/**
 * Known-trigger probes on the fixtures: the BadNets-backdoored tinyCnn sends the BadNets
 * trigger to class 0, the clean tinyCnn of the same data does not; the attacks without a
 * data-free default trigger are skipped with the reason; the rate arithmetic is exact.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { probeConfig, probeKnownTriggers, rateTowardsEachClass, UNPROBED_ATTACKS, DEFAULT_PROBE_SEED, type ProbeReport } from '../../core/audit/probes';
import { AuditPolicy } from '../../schemas/audit';
import { knownAttacks } from '../../core/attacks/registry';
import { deriveSeed } from '../../core/rng';
import { tf } from '../../core/tf';
import { backdooredFixture, cleanModel, referenceSet } from '../support/auditFixtures';
import type { Classifier } from '../../core/models/classifier';

describe('rateTowardsEachClass', () => {
  it('counts, per class c, the images of other classes predicted as c', () => {
    const labels = Int32Array.from([0, 0, 1, 1, 2, 2]);
    const predictions = Int32Array.from([0, 2, 0, 0, 0, 2]);
    // class 0: three of the four images of classes 1 and 2 -> 75%; class 2: one of the four of classes 0 and 1 -> 25%
    assert.deepEqual(rateTowardsEachClass(predictions, labels, 3), [75, 0, 25]);
  });
});

describe('known-trigger probes', () => {
  const reference = referenceSet(200);
  let backdoored: Classifier;
  let clean: Classifier;
  let onBackdoored: ProbeReport;
  let onClean: ProbeReport;
  before(async () => {
    backdoored = await (await backdooredFixture()).model();
    clean = await cleanModel();
    onBackdoored = await probeKnownTriggers(backdoored, reference);
    onClean = await probeKnownTriggers(clean, reference);
  });
  after(() => {
    backdoored.model.dispose();
    clean.model.dispose();
  });
  const find = (r: ProbeReport, attack: string) => r.probes.find((p) => p.attack === attack)!;

  it('probe every registered attack with the seed of a default library run', () => {
    assert.deepEqual(onBackdoored.probes.map((p) => p.attack), knownAttacks());
    assert.equal(onBackdoored.seed, deriveSeed(0, 'attack'));
    assert.equal(DEFAULT_PROBE_SEED, onBackdoored.seed);
    assert.equal(onBackdoored.referenceSize, 200);
  });

  it('name class 0 as the worst class of the BadNets trigger on the backdoored model, not on the clean one', () => {
    const b = find(onBackdoored, 'badnets');
    const c = find(onClean, 'badnets');
    console.log(`measured: badnets probe ${b.worstAsr!.toFixed(1)}% -> class ${b.worstClass} (backdoored), ${c.worstAsr!.toFixed(1)}% (clean)`);
    // measured: 100% on the backdoored model, 0% on the clean one
    assert.equal(b.worstClass, 0);
    assert.ok(b.worstAsr! >= 90);
    assert.ok(c.worstAsr! <= 10);
    assert.match(b.how, /default trigger \{"patchSize":3\}, attack seed \d+/);
    // the untriggered rate is reported beside it (the model's own confusion into each class)
    assert.ok(b.cleanRateByClass!.every((v) => v <= 5));
  });

  it('skip the attacks whose trigger is learned per run, saying why', () => {
    for (const attack of Object.keys(UNPROBED_ATTACKS)) {
      const p = find(onBackdoored, attack);
      assert.equal(p.status, 'skipped');
      assert.equal(p.asrByClass, undefined);
      assert.match(p.how, /^skipped: .*(no data-free default trigger|no fixed default pattern)/);
    }
  });

  it('show that SIG is a natural feature of the synthetic gratings (why the test policies exclude it)', () => {
    // SIG adds a vertical grating of 6 cycles per width: class 5's own pattern in this data
    const s = find(onClean, 'sig');
    console.log(`measured: sig probe on the clean model ${s.worstAsr!.toFixed(1)}% -> class ${s.worstClass}`);
    assert.equal(s.worstClass, 5);
    assert.ok(s.worstAsr! >= 50, `measured 96.7%, got ${s.worstAsr}`);
  });

  it('probe at a fraction of the strength knobs when the policy says so; BadNets, without one, unchanged', async () => {
    const half = await probeKnownTriggers(backdoored, reference, { strength: 0.5 });
    assert.equal(half.strength, 0.5);
    assert.equal(onBackdoored.strength, undefined, 'the default strength is not written');
    assert.match(find(half, 'sig').how, /^default trigger at x0\.5 delta \{"delta":20,"frequency":6\}/);
    assert.match(find(half, 'blended').how, /"alpha":0\.1,/);
    // the patch has no knob: the same trigger, the same rates
    assert.deepEqual(find(half, 'badnets').asrByClass, find(onBackdoored, 'badnets').asrByClass);
    assert.equal(find(half, 'badnets').how, find(onBackdoored, 'badnets').how);
    // a weaker signal moves fewer images: the clean model's SIG drift (a natural feature here) shrinks
    const cleanHalf = await probeKnownTriggers(clean, reference, { strength: 0.5, attacks: ['sig'] });
    assert.ok(find(cleanHalf, 'sig').worstAsr! < find(onClean, 'sig').worstAsr!, `${find(cleanHalf, 'sig').worstAsr} vs ${find(onClean, 'sig').worstAsr}`);
  });

  it('leave no tensors behind', async () => {
    const n = tf.memory().numTensors;
    await probeKnownTriggers(clean, reference, { attacks: ['badnets', 'wanet'] });
    assert.equal(tf.memory().numTensors, n);
  });
});

describe('probe strength', () => {
  it('scales the knob of each attack that has one from its default, and only that field', () => {
    assert.deepEqual(probeConfig('sig', 0.75), { ...probeConfig('sig'), delta: 30 });
    assert.deepEqual(probeConfig('wanet', 0.5), { ...probeConfig('wanet'), s: 0.25 });
    assert.equal((probeConfig('blended', 0.75) as { alpha: number }).alpha.toFixed(2), '0.15');
    assert.deepEqual(probeConfig('badnets', 0.5), probeConfig('badnets'));
  });

  it('is a policy field in (0, 1], default 1, refused outside it by name', () => {
    assert.equal(AuditPolicy.parse({}).probes.strength, 1);
    assert.equal(AuditPolicy.parse({ probes: { strength: 0.75 } }).probes.strength, 0.75);
    for (const bad of [0, 1.5, -1]) {
      const r = AuditPolicy.safeParse({ probes: { strength: bad } });
      assert.equal(r.success, false);
      assert.deepEqual(r.error!.issues[0].path, ['probes', 'strength']);
    }
  });
});
