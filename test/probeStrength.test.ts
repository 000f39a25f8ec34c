/**
 * bench/probeStrength.ts's own arithmetic: the transpose behind the sig-vertical control, and the
 * strength points' knob values (the probe configs of core/audit/probes.ts at each factor).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { strengthPoints, transposed } from '../bench/probeStrength';
import type { ImageDataset } from '../core/data/dataset';

const image = (height: number, width: number, channels: number, n = 1): ImageDataset => ({
  name: 't',
  height,
  width,
  channels,
  numClasses: 2,
  images: Uint8Array.from({ length: n * height * width * channels }, (_, i) => i % 251),
  labels: Int32Array.from({ length: n }, (_, i) => i % 2),
});

test('transposed swaps rows and columns pixel by pixel, channels kept together; twice is the identity', () => {
  const d = image(2, 3, 2, 2);
  const t = transposed(d);
  assert.equal(t.height, 3);
  assert.equal(t.width, 2);
  const at = (x: ImageDataset, i: number, y: number, col: number, k: number) => x.images[((i * x.height + y) * x.width + col) * x.channels + k];
  for (let i = 0; i < 2; i++) for (let y = 0; y < 2; y++) for (let c = 0; c < 3; c++) for (let k = 0; k < 2; k++) assert.equal(at(t, i, c, y, k), at(d, i, y, c, k));
  assert.deepEqual(transposed(t).images, d.images);
});

test('strength points: every knob probe at every factor, the knob value scaled from its default', async () => {
  const reference = image(32, 32, 3, 4);
  // a model that calls everything class 1: 100 % towards 1 from the class-0 images, whatever the trigger
  const points = await strengthPoints(async (d) => new Int32Array(d.labels.length).fill(1), reference, [0.5, 1], 0);
  assert.deepEqual(
    points.map((p) => [p.probe, p.strength, Number(p.value.toFixed(3))]),
    [
      ['sig', 0.5, 20],
      ['sig', 1, 40],
      ['blended', 0.5, 0.1],
      ['blended', 1, 0.2],
      ['wanet', 0.5, 0.25],
      ['wanet', 1, 0.5],
    ],
  );
  for (const p of points) {
    assert.equal(p.worstClass, 1);
    assert.equal(p.worstAsr, 100);
    assert.equal(p.targetAsr, 0);
  }
});
