/**
 * Previews of triggers as a run recorded them (core/attacks/learnedPreview.ts): Narcissus'
 * perturbation as its own row, Input-Aware's pattern and mask per image from stored
 * generators (checked against the generators' own outputs), the sha256 of the generators
 * checked, and the generators unloaded afterwards.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { PNG } from 'pngjs';

import { tf } from '../../core/tf';
import { generateSyntheticDataset } from '../../core/data/synthetic';
import { subsetDataset } from '../../core/data/dataset';
import { parseAttackConfig } from '../../core/attacks/registry';
import { previewIndices } from '../../core/attacks/preview';
import { recordedTriggerPreviewPng } from '../../core/attacks/learnedPreview';
import { encodePerturbation } from '../../core/attacks/narcissusPerturbation';
import { buildInputAwareGenerator, encodeInputAwareGenerators, maskOf, patternOf } from '../../core/attacks/inputAwareTraining';
import { inputAwareGenerators } from '../../core/attacks/inputAware';
import { AttackConfigError } from '../../core/attacks/base';

const ds = generateSyntheticDataset({ size: 30, seed: 4, height: 8, width: 8 });
const SCALE = 2;
const TILE = 16; // 8 px x2, taller than the 14 px label glyphs
const GAP = 4;
const MARGIN = 8;

function rgb(png: PNG, x: number, y: number): number[] {
  const o = (y * png.width + x) * 4;
  return [png.data[o], png.data[o + 1], png.data[o + 2]];
}
/** Top-left pixel of tile (row r, column k); columns are right-aligned. */
function tile(png: PNG, r: number, k: number, n: number): [number, number] {
  return [png.width - MARGIN - n * (TILE + GAP) + GAP + k * (TILE + GAP), MARGIN + r * (TILE + GAP)];
}

test('recorded preview: Narcissus adds its perturbation as a TRIGGER row at mid-grey', async () => {
  const config = parseAttackConfig({ name: 'narcissus', target: 0 });
  const delta = Float32Array.from({ length: 8 * 8 * 3 }, (_, i) => ((i % 7) - 3) / 3 * config.linfRadius);
  const triggerParameters = { perturbation: encodePerturbation(delta), shape: [8, 8, 3] };
  const { png: bytes, rows } = await recordedTriggerPreviewPng(ds, { config, attackSeed: 1, triggerParameters }, async () => assert.fail('no artifact'), 4, { scale: SCALE });
  assert.deepEqual(rows, ['CLEAN', 'TRIGGERED', '|DIFF| X10', 'TRIGGER']);
  const png = PNG.sync.read(bytes);
  assert.equal(png.height, MARGIN + 4 * (TILE + GAP) - GAP + MARGIN);
  for (let k = 0; k < 4; k++) {
    const [x0, y0] = tile(png, 3, k, 4);
    for (const [py, px] of [[0, 0], [3, 5], [7, 7]]) {
      const want = [0, 1, 2].map((c) => Math.round(128 + (delta[(py * 8 + px) * 3 + c] / config.linfRadius) * 127));
      assert.deepEqual(rgb(png, x0 + px * SCALE, y0 + py * SCALE), want.map((v) => Math.max(0, Math.min(255, v))), `tile ${k} (${px},${py})`);
    }
  }
});

test('recorded preview: Input-Aware renders PATTERN and MASK rows from the stored generators, then unloads them', async () => {
  const config = parseAttackConfig({ name: 'inputaware', target: 0, generatorChannels: [4, 4, 4] });
  const g = {
    mask: buildInputAwareGenerator({ height: 8, width: 8, channels: 3 }, 1, [4, 4, 4], 11, 'iad_mask'),
    pattern: buildInputAwareGenerator({ height: 8, width: 8, channels: 3 }, 3, [4, 4, 4], 12, 'iad_pattern'),
  };
  try {
    const bytes = await encodeInputAwareGenerators(g);
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    const triggerParameters = { generators: 'mem://generators', generatorsSha256: sha256, generatorBytes: bytes.length };
    const reads: string[] = [];
    const read = async (ref: { uri: string; sha256: string; bytes: number }) => {
      reads.push(`${ref.uri} ${ref.sha256} ${ref.bytes}`);
      return bytes;
    };
    const n = 3;
    const out = await recordedTriggerPreviewPng(ds, { config, attackSeed: 1, triggerParameters }, read, n, { scale: SCALE });
    assert.deepEqual(reads, [`mem://generators ${sha256} ${bytes.length}`]);
    assert.deepEqual(out.rows, ['CLEAN', 'TRIGGERED', '|DIFF| X10', 'PATTERN', 'MASK']);
    const png = PNG.sync.read(out.png);
    assert.equal(png.height, MARGIN + 5 * (TILE + GAP) - GAP + MARGIN);
    // the generators' own outputs on the previewed images
    const picked = subsetDataset(ds, previewIndices(ds, config, n));
    const x = tf.tensor4d(Float32Array.from(picked.images, (v) => v / 255), [n, 8, 8, 3]);
    const pattern = tf.tidy(() => tf.mul(patternOf(g, x, false), 255)).dataSync();
    const mask = tf.tidy(() => tf.mul(maskOf(g, x, false), 255)).dataSync();
    x.dispose();
    for (let k = 0; k < n; k++) {
      for (const [py, px] of [[0, 0], [4, 2], [7, 7]]) {
        const p = (k * 64 + py * 8 + px);
        const [xp, yp] = tile(png, 3, k, n);
        assert.deepEqual(rgb(png, xp + px * SCALE, yp + py * SCALE), [0, 1, 2].map((c) => Math.round(pattern[p * 3 + c])), `pattern ${k}`);
        const [xm, ym] = tile(png, 4, k, n);
        const m = Math.round(mask[p]);
        assert.deepEqual(rgb(png, xm + px * SCALE, ym + py * SCALE), [m, m, m], `mask ${k}`);
      }
    }
    // unloaded: the registry no longer knows them
    assert.throws(() => inputAwareGenerators({ generatorsId: sha256 }), /not loaded/);
    // a record whose digest does not match the bytes is refused, naming the field
    await assert.rejects(
      recordedTriggerPreviewPng(ds, { config, attackSeed: 1, triggerParameters: { ...triggerParameters, generatorsSha256: 'ab'.repeat(32) } }, read, n),
      (e: Error) => e instanceof AttackConfigError && e.field === 'triggerParameters.generatorsSha256',
    );
    await assert.rejects(
      recordedTriggerPreviewPng(ds, { config, attackSeed: 1, triggerParameters: {} }, read, n),
      (e: Error) => e instanceof AttackConfigError && e.field === 'triggerParameters.generators',
    );
  } finally {
    g.mask.dispose();
    g.pattern.dispose();
  }
});

test('recorded preview: a fixed trigger uses the recorded parameters (WaNet\'s grid) and the standard rows', async () => {
  const config = parseAttackConfig({ name: 'wanet', s: 2 });
  const controlPoints = Array.from({ length: 32 }, (_, i) => ((i * 7) % 5) - 2);
  const a = await recordedTriggerPreviewPng(ds, { config, attackSeed: 1, triggerParameters: { controlPoints } }, async () => assert.fail(), 3);
  const b = await recordedTriggerPreviewPng(ds, { config, attackSeed: 999, triggerParameters: { controlPoints } }, async () => assert.fail(), 3);
  assert.deepEqual(a.rows, ['CLEAN', 'TRIGGERED', '|DIFF| X10']);
  assert.ok(a.png.equals(b.png), 'the recorded grid, not the seed, decides the warp');
});
