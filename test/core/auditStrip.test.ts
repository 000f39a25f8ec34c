/**
 * STRIP (core/audit/strip.ts): the superimposition, entropy and threshold arithmetic exactly,
 * and on the audit fixtures: BadNets-triggered inputs keep the backdoored model's prediction
 * under any overlay (low entropy, flagged), while the clean model of the same data treats them
 * like clean inputs.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { rowEntropies, stripDetection, stripThreshold, superimpose, type StripResult } from '../../core/audit/strip';
import { predictProbabilities, type Classifier } from '../../core/models/classifier';
import { subsetDataset, type ImageDataset } from '../../core/data/dataset';
import { getAttack, parseAttackConfig } from '../../core/attacks/registry';
import { backdooredFixture, cleanModel, referenceSet } from '../support/auditFixtures';

function tiny(pixels: number[][], labels: number[]): ImageDataset {
  return { name: 'tiny', height: 1, width: 2, channels: 1, numClasses: 3, images: Uint8Array.from(pixels.flat()), labels: Int32Array.from(labels) };
}

describe('STRIP arithmetic', () => {
  it('superimposes each input on its overlays, input-major: the rounded 50/50 blend, or the sum saturated at 255', () => {
    const inputs = tiny([[10, 250], [0, 100]], [1, 2]);
    const overlays = tiny([[5, 10], [200, 0], [1, 1]], [0, 0, 0]);
    const average = superimpose(inputs, overlays, [[0, 2], [1, 0]]);
    assert.deepEqual(Array.from(average.images), [8, 130, 6, 126, 100, 50, 3, 55]);
    assert.deepEqual(Array.from(average.labels), [1, 1, 2, 2]);
    const sum = superimpose(inputs, overlays, [[0, 2], [1, 0]], 'sum');
    assert.deepEqual(Array.from(sum.images), [15, 255, 11, 251, 200, 100, 5, 110]);
  });
  it('refuses overlays of another shape', () => {
    const other = { ...tiny([[1, 2]], [0]), width: 1, images: Uint8Array.from([1]) };
    assert.throws(() => superimpose(tiny([[1, 2]], [0]), other, [[0]]), /overlays of 1x1x1 do not match inputs of 1x2x1/);
  });
  it('measures entropy in bits per row', () => {
    const h = rowEntropies(Float32Array.from([0.25, 0.25, 0.25, 0.25, 1, 0, 0, 0, 0.5, 0.5, 0, 0]), 4);
    assert.deepEqual(Array.from(h).map((v) => Number(v.toFixed(6))), [2, 0, 1]);
  });
  it('sets the threshold so that at most the false-rejection rate of clean inputs falls below it', () => {
    const clean = [0.5, 0.1, 0.9, 0.3, 0.7, 0.2, 1.0, 0.4, 0.8, 0.6];
    assert.equal(stripThreshold(clean, 0.1), 0.2);
    assert.equal(clean.filter((h) => h < stripThreshold(clean, 0.1)).length, 1);
    assert.equal(clean.filter((h) => h < stripThreshold(clean, 0.25)).length, 2);
    assert.equal(clean.filter((h) => h < stripThreshold(clean, 0)).length, 0);
    assert.throws(() => stripThreshold([], 0.1), /no clean entropies/);
    assert.throws(() => stripThreshold(clean, 1), /falseRejectionRate must be in \[0, 1\)/);
  });
});

describe('STRIP on the audit fixtures (BadNets-backdoored and clean tinyCnn)', () => {
  let backdoored: Classifier;
  let clean: Classifier;
  let onBackdoored: StripResult;
  let onClean: StripResult;
  before(async () => {
    backdoored = await (await backdooredFixture()).model();
    clean = await cleanModel();
    // 400 clean reference images: half overlays, a quarter to set the threshold, and the last
    // quarter's non-target images with the BadNets trigger as the suspect inputs
    const reference = referenceSet(400);
    const part = (from: number, to: number) => subsetDataset(reference, Array.from({ length: to - from }, (_, i) => from + i));
    const held = part(300, 400);
    const nonTarget = subsetDataset(held, Array.from(held.labels.keys()).filter((i) => held.labels[i] !== 0));
    const config = parseAttackConfig({ name: 'badnets' });
    const sets = { overlays: part(0, 200), clean: part(200, 300), suspect: getAttack('badnets').applyTrigger(nonTarget, config, 0) };
    const options = { overlaysPerInput: 16, falseRejectionRate: 0.05, seed: 3 };
    onBackdoored = await stripDetection((ds) => predictProbabilities(backdoored, ds), sets, options);
    onClean = await stripDetection((ds) => predictProbabilities(clean, ds), sets, options);
    console.log(`  STRIP at 5 % FRR: backdoored model flags ${onBackdoored.flagged}/${onBackdoored.inputs} triggered inputs (clean ${onBackdoored.cleanFlagged}/${onBackdoored.cleanInputs}, threshold ${onBackdoored.threshold.toFixed(3)} bits); clean model ${onClean.flagged}/${onClean.inputs} (clean ${onClean.cleanFlagged}/${onClean.cleanInputs}, threshold ${onClean.threshold.toFixed(3)} bits)`);
  });
  after(() => {
    backdoored.model.dispose();
    clean.model.dispose();
  });

  it('keeps the clean false rejections at the chosen rate on the threshold set', () => {
    for (const r of [onBackdoored, onClean]) assert.ok(r.cleanFlagged <= Math.floor(0.05 * r.cleanInputs), JSON.stringify(r));
  });
  it('flags most triggered inputs on the backdoored model, and far fewer on the clean one', () => {
    assert.ok(onBackdoored.flagged >= 0.8 * onBackdoored.inputs, JSON.stringify(onBackdoored));
    assert.ok(onClean.flagged <= 0.3 * onClean.inputs, JSON.stringify(onClean));
  });
});
