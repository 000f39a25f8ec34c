/**
 * Image folders and GTSRB: decoding (PNG through TensorFlow, PPM/PGM here), antialiased
 * resizing, class numbering from folder names or a CSV, both GTSRB layouts, and the errors a
 * user sees for a folder that is not what the config says.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { tf } from '../../core/tf';
import { DatasetError, imageBytes, type ImageDataset } from '../../core/data/dataset';
import { decodeNetpbm, loadImageFolder } from '../../core/data/imageFolder';
import { resizeImage } from '../../core/data/resize';
import { findGtsrbLayout, loadGtsrb, GTSRB_NUM_CLASSES } from '../../core/data/gtsrb';
import { parsePurifyConfig } from '../../schemas/purify';
import { prepareData } from '../../core/experiment/prepareData';

const tmp = () => mkdtempSync(path.join(os.tmpdir(), 'ntml-imgdir-'));

function ppm(width: number, height: number, px: (x: number, y: number, c: number) => number): Buffer {
  const head = Buffer.from(`P6\n# made by a test\n${width} ${height}\n255\n`, 'latin1');
  const body = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) for (let c = 0; c < 3; c++) body[(y * width + x) * 3 + c] = px(x, y, c);
  return Buffer.concat([head, body]);
}

async function png(width: number, height: number, rgb: [number, number, number]): Promise<Buffer> {
  const t = tf.tidy(() => tf.mul(tf.ones([height, width, 3], 'int32'), tf.tensor1d(rgb, 'int32')) as import('@tensorflow/tfjs-node').Tensor3D);
  const bytes = await tf.node.encodePng(t);
  t.dispose();
  return Buffer.from(bytes);
}

/** image i of a data set as [r, g, b] at pixel (0, 0) */
const firstPixel = (ds: ImageDataset, i: number) => Array.from(ds.images.subarray(i * imageBytes(ds), i * imageBytes(ds) + ds.channels));

test('resizeImage: a copy at the same size, constant images stay constant, upscaling equals TensorFlow bilinear', () => {
  const img = Uint8Array.from({ length: 5 * 7 * 3 }, (_, i) => (i * 37) % 256);
  assert.deepEqual(resizeImage(img, 5, 7, 3, 5, 7), img);
  const flat = new Uint8Array(50 * 40 * 3).fill(173);
  for (const [h, w] of [[32, 32], [7, 90], [50, 40], [100, 3]]) {
    assert.ok(resizeImage(flat, 50, 40, 3, h, w).every((v) => v === 173), `${h}x${w}`);
  }
  // upscaling (no widening): half-pixel-centre bilinear, as tf.image.resizeBilinear(halfPixelCenters)
  const small = Uint8Array.from({ length: 6 * 5 * 3 }, (_, i) => (i * 53 + 11) % 256);
  const ours = resizeImage(small, 6, 5, 3, 13, 11);
  const ref = tf.tidy(() => tf.image.resizeBilinear(tf.tensor3d(small, [6, 5, 3], 'float32'), [13, 11], false, true).round().dataSync());
  let maxDiff = 0;
  for (let i = 0; i < ours.length; i++) maxDiff = Math.max(maxDiff, Math.abs(ours[i] - ref[i]));
  assert.ok(maxDiff <= 1, `max difference to TensorFlow ${maxDiff}`);
});

test('resizeImage: shrinking averages every source pixel (no aliasing)', () => {
  // columns 3 and 4 of every 8 are white: 2-tap bilinear at 1/8 reads exactly those two (all 255);
  // the widened filter sees their share of the area, 2/8 of 255 = 64
  const side = 256;
  const stripes = Uint8Array.from({ length: side * side }, (_, i) => ((i % side) % 8 === 3 || (i % side) % 8 === 4 ? 255 : 0));
  const out = resizeImage(stripes, side, side, 1, 32, 32);
  const min = Math.min(...out);
  const max = Math.max(...out);
  assert.ok(min >= 60 && max <= 75, `stripes average to their area share, got ${min}..${max}`);
  // a left/right split stays a split: the left quarter is dark, the right quarter bright
  const split = Uint8Array.from({ length: side * side }, (_, i) => ((i % side) < side / 2 ? 20 : 220));
  const s = resizeImage(split, side, side, 1, 32, 32);
  assert.equal(s[5], 20);
  assert.equal(s[28], 220);
});

test('decodeNetpbm: P6, P5 and plain P3 with comments, 16-bit samples, and clear errors', () => {
  const p6 = decodeNetpbm(ppm(2, 1, (x, _y, c) => (x === 0 ? [255, 0, 0][c] : [0, 0, 255][c])));
  assert.deepEqual([p6.width, p6.height, p6.channels], [2, 1, 3]);
  assert.deepEqual(Array.from(p6.pixels), [255, 0, 0, 0, 0, 255]);
  const p5 = decodeNetpbm(Buffer.concat([Buffer.from('P5 3 1 65535\n', 'latin1'), Buffer.from([0, 0, 0x80, 0x00, 0xff, 0xff])]));
  assert.deepEqual([p5.channels, ...p5.pixels], [1, 0, 128, 255]);
  const p3 = decodeNetpbm(Buffer.from('P3\n# comment\n1 1 # size\n15\n15 0 5\n', 'latin1'));
  assert.deepEqual(Array.from(p3.pixels), [255, 0, 85]);
  assert.throws(() => decodeNetpbm(Buffer.from('P4 1 1\n\0', 'latin1')), /magic "P4"/);
  assert.throws(() => decodeNetpbm(Buffer.from('P6 4 4 255\n\0\0\0', 'latin1')), /truncated: 3 pixel bytes, expected 48/);
  assert.throws(() => decodeNetpbm(Buffer.from('P3 1 1 255 1 2 300', 'latin1')), /pixel value 2 is 300/);
});

test('loadImageFolder: integer class folders are the labels; PNG and PPM of any size are resized; other files are ignored', async () => {
  const dir = tmp();
  for (const c of ['00000', '00002']) mkdirSync(path.join(dir, c));
  writeFileSync(path.join(dir, '00000', 'a.ppm'), ppm(40, 25, (_x, _y, c) => [10, 20, 30][c]));
  writeFileSync(path.join(dir, '00000', 'b.png'), await png(9, 9, [200, 100, 50]));
  writeFileSync(path.join(dir, '00000', 'GT-00000.csv'), 'Filename;ClassId\n');
  writeFileSync(path.join(dir, '00002', 'c.PPM'), ppm(8, 8, (x, _y, c) => (x < 4 ? 0 : 255) * (c === 0 ? 1 : 0)));
  const ds = await loadImageFolder(dir, { size: 16, channels: 3 });
  assert.deepEqual([ds.height, ds.width, ds.channels, ds.numClasses], [16, 16, 3, 3], 'numClasses = largest folder number + 1');
  assert.deepEqual(Array.from(ds.labels), [0, 0, 2]);
  assert.equal(ds.classNames, undefined);
  assert.deepEqual(firstPixel(ds, 0), [10, 20, 30]);
  assert.deepEqual(firstPixel(ds, 1), [200, 100, 50]);
  assert.deepEqual(firstPixel(ds, 2), [0, 0, 0]);
  const c = 2 * imageBytes(ds);
  assert.equal(ds.images[c + 15 * 3], 255, 'right half of the upscaled red/black image is red');
  // grey output from colour input: luma
  const grey = await loadImageFolder(dir, { size: 4, channels: 1, numClasses: 5 });
  assert.equal(grey.numClasses, 5);
  assert.equal(grey.images[0], Math.round(0.299 * 10 + 0.587 * 20 + 0.114 * 30));
  // the same folder loads to the same bytes
  const again = await loadImageFolder(dir, { size: 16, channels: 3 });
  assert.deepEqual(again.images, ds.images);
});

test('loadImageFolder: named classes are sorted or follow `classes`; errors name the field and file', async () => {
  const dir = tmp();
  for (const c of ['stop', 'yield', 'limit']) {
    mkdirSync(path.join(dir, c));
    writeFileSync(path.join(dir, c, 'x.ppm'), ppm(4, 4, () => c.length * 10));
  }
  const sorted = await loadImageFolder(dir, { size: 4, channels: 3 });
  assert.deepEqual(sorted.classNames, ['limit', 'stop', 'yield']);
  assert.deepEqual(Array.from(sorted.labels), [0, 1, 2]);
  const given = await loadImageFolder(dir, { size: 4, channels: 3, classes: ['yield', 'stop', 'limit', 'other'] });
  assert.deepEqual(Array.from(given.labels), [2, 1, 0], 'folders read in sorted order, labelled by position in classes');
  assert.equal(given.numClasses, 4);
  await assert.rejects(loadImageFolder(dir, { size: 4, channels: 3, classes: ['stop', 'yield'], field: 'cleanSet' }), (e: Error) => e instanceof DatasetError && /cleanSet: .* class folders not in classes: limit/.test(e.message));
  await assert.rejects(loadImageFolder(path.join(dir, 'nowhere'), { size: 4, channels: 3, field: 'trainingSet' }), /trainingSet: folder .*nowhere not found/);
  await assert.rejects(loadImageFolder(path.join(dir, 'stop'), { size: 4, channels: 3 }), /has no class subfolders/);
  writeFileSync(path.join(dir, 'stop', 'broken.png'), 'not a png');
  await assert.rejects(loadImageFolder(dir, { size: 4, channels: 3, field: 'trainingSet' }), /trainingSet: .*broken\.png is not a readable image/);
  const empty = tmp();
  mkdirSync(path.join(empty, '0'));
  await assert.rejects(loadImageFolder(empty, { size: 4, channels: 3 }), /holds no images/);
});

test('loadImageFolder with a labels CSV: ";" or "," separated, paths relative to the folder, never outside it', async () => {
  const dir = tmp();
  mkdirSync(path.join(dir, 'Test'));
  for (let i = 0; i < 3; i++) writeFileSync(path.join(dir, 'Test', `${i}.ppm`), ppm(5, 5, () => 40 * i));
  writeFileSync(path.join(dir, 'semi.csv'), 'Filename;Width;Height;ClassId\nTest/2.ppm;5;5;7\nTest/0.ppm;5;5;1\n');
  const semi = await loadImageFolder(dir, { size: 5, channels: 3, labels: path.join(dir, 'semi.csv') });
  assert.deepEqual(Array.from(semi.labels), [7, 1], 'CSV order');
  assert.equal(semi.numClasses, 8);
  assert.deepEqual(firstPixel(semi, 0), [80, 80, 80]);
  writeFileSync(path.join(dir, 'comma.csv'), 'Width,ClassId,Path\n5,3,Test/1.ppm\n');
  const comma = await loadImageFolder(dir, { size: 5, channels: 3, labels: path.join(dir, 'comma.csv'), numClasses: 43 });
  assert.deepEqual([comma.numClasses, comma.labels[0], firstPixel(comma, 0)[0]], [43, 3, 40]);
  writeFileSync(path.join(dir, 'bad.csv'), 'Image,Kind\nTest/1.ppm,3\n');
  await assert.rejects(loadImageFolder(dir, { size: 5, channels: 3, labels: path.join(dir, 'bad.csv'), field: 'testSet' }), /testSet\.labels: .*needs a file column/);
  writeFileSync(path.join(dir, 'escape.csv'), 'Path,ClassId\n../etc/passwd,3\n');
  await assert.rejects(loadImageFolder(dir, { size: 5, channels: 3, labels: path.join(dir, 'escape.csv') }), /expected a path inside/);
  writeFileSync(path.join(dir, 'label.csv'), 'Path,ClassId\nTest/1.ppm,-2\n');
  await assert.rejects(loadImageFolder(dir, { size: 5, channels: 3, labels: path.join(dir, 'label.csv') }), /row 2 .*class id "-2" is not a whole number >= 0/);
  await assert.rejects(loadImageFolder(dir, { size: 5, channels: 3, labels: path.join(dir, 'semi.csv'), numClasses: 5 }), /class id 7, but numClasses is 5/);
});

/** A GTSRB tree with `perClass` images of classes 0..2 in the official or the Kaggle layout. */
function gtsrbTree(layout: 'official' | 'kaggle', perClass = 2): string {
  const root = tmp();
  const colour = (cls: number, i: number) => 30 * cls + i;
  if (layout === 'official') {
    const train = path.join(root, 'GTSRB', 'Final_Training', 'Images');
    for (let cls = 0; cls < 3; cls++) {
      const d = path.join(train, String(cls).padStart(5, '0'));
      mkdirSync(d, { recursive: true });
      for (let i = 0; i < perClass; i++) writeFileSync(path.join(d, `00000_0000${i}.ppm`), ppm(30 + i, 33, () => colour(cls, i)));
    }
    const test = path.join(root, 'GTSRB', 'Final_Test', 'Images');
    mkdirSync(test, { recursive: true });
    writeFileSync(path.join(test, '00000.ppm'), ppm(41, 40, () => 200));
    writeFileSync(path.join(test, '00001.ppm'), ppm(41, 40, () => 210));
    writeFileSync(path.join(test, 'GT-final_test.test.csv'), 'Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2\n');
    writeFileSync(path.join(root, 'GT-final_test.csv'), 'Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId\n00000.ppm;41;40;5;5;36;35;2\n00001.ppm;41;40;5;5;36;35;42\n');
  } else {
    for (let cls = 0; cls < 3; cls++) {
      const d = path.join(root, 'Train', String(cls));
      mkdirSync(d, { recursive: true });
      for (let i = 0; i < perClass; i++) writeFileSync(path.join(d, `${cls}_${i}.ppm`), ppm(30, 30, () => colour(cls, i)));
    }
    mkdirSync(path.join(root, 'Test'));
    writeFileSync(path.join(root, 'Test', '00000.ppm'), ppm(41, 40, () => 200));
    writeFileSync(path.join(root, 'Test.csv'), 'Width,Height,Roi.X1,Roi.Y1,Roi.X2,Roi.Y2,ClassId,Path\n41,40,5,5,36,35,2,Test/00000.ppm\n');
  }
  return root;
}

test('GTSRB: both layouts load as 43-class 32x32 RGB splits; a missing test-label file is named', async () => {
  const official = gtsrbTree('official');
  assert.equal(findGtsrbLayout(official).layout, 'official');
  const train = await loadGtsrb(official, 'train');
  assert.deepEqual([train.height, train.width, train.channels, train.numClasses, train.name], [32, 32, 3, GTSRB_NUM_CLASSES, 'gtsrb:train']);
  assert.deepEqual(Array.from(train.labels), [0, 0, 1, 1, 2, 2]);
  assert.deepEqual(firstPixel(train, 3), [31, 31, 31]);
  const test = await loadGtsrb(official, 'test');
  assert.deepEqual(Array.from(test.labels), [2, 42]);
  assert.deepEqual(firstPixel(test, 1), [210, 210, 210]);

  const kaggle = gtsrbTree('kaggle');
  assert.equal(findGtsrbLayout(kaggle).layout, 'kaggle');
  assert.deepEqual(Array.from((await loadGtsrb(kaggle, 'test')).labels), [2]);
  assert.equal((await loadGtsrb(kaggle, 'train', 24)).height, 24);

  const { unlinkSync } = await import('node:fs');
  unlinkSync(path.join(official, 'GT-final_test.csv'));
  assert.throws(() => findGtsrbLayout(official), /GT-final_test\.csv \(from GTSRB_Final_Test_GT\.zip\) not found/);
  assert.throws(() => findGtsrbLayout(tmp(), 'data.path'), /data\.path: .* holds neither GTSRB layout/);
});

test('prepareData: GTSRB and image-folder evaluation data get poisoned; protection-mode folders must agree on their classes', async () => {
  const root = gtsrbTree('official', 6);
  const cfg = parsePurifyConfig({ seed: 1, data: { format: 'gtsrb', path: root }, attack: { name: 'badnets', target: 0, rate: 0.2 }, cleanBudget: 6, cleanReserve: 6 });
  const prepared = await prepareData(cfg);
  assert.equal(prepared.summary.numClasses, 43);
  assert.deepEqual(prepared.summary.shape, [32, 32, 3]);
  // 18 training images, of which the 6-image clean reserve is the defender's own (not in the training set)
  assert.equal(prepared.summary.trainSize, 18 - 6);
  assert.equal(prepared.summary.poisonedCount, Math.round(0.2 * (18 - 6)));
  assert.match(prepared.summary.source, /^GTSRB \(/);

  const train = tmp();
  const clean = tmp();
  for (const [dir, classes] of [[train, ['cat', 'dog']], [clean, ['cat', 'eel']]] as const) {
    for (const c of classes) {
      mkdirSync(path.join(dir, c));
      for (let i = 0; i < 5; i++) writeFileSync(path.join(dir, c, `${i}.ppm`), ppm(8, 8, () => i * 20));
    }
  }
  const protection = (extra: Record<string, unknown> = {}) =>
    parsePurifyConfig({
      mode: 'protection',
      trainingSet: { format: 'imageFolder', dir: train, size: 8, ...extra },
      cleanSet: { format: 'imageFolder', dir: clean, size: 8, ...extra },
      cleanBudget: 10,
      model: { arch: 'tinyCnn' },
    });
  // same number of classes, other names: "eel" would silently take "dog"'s label 1
  await assert.rejects(prepareData(protection()), /cleanSet: class folders cat, eel differ from trainingSet's cat, dog/);
  const ok = await prepareData(protection({ classes: ['cat', 'dog', 'eel'] }));
  assert.deepEqual([ok.summary.trainSize, ok.summary.cleanBudget, ok.summary.numClasses], [10, 10, 3]);
  assert.deepEqual([...new Set([...ok.cleanFit.labels, ...ok.cleanHeldOut.labels])].sort(), [0, 2], 'eel is class 2');
  // an S3 image folder is refused when the config is validated, before any work
  assert.throws(
    () => parsePurifyConfig({ mode: 'protection', trainingSet: { format: 'imageFolder', dir: 's3://bucket/train' }, cleanSet: { format: 'imageFolder', dir: clean }, model: { arch: 'tinyCnn' } }),
    /trainingSet\.dir: must be a local folder of the workers, not an s3:\/\/ URI/,
  );
});
