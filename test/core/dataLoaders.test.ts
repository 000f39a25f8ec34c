import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { gzipSync } from 'node:zlib';
import { DatasetError, type ImageDataset } from '../../core/data/dataset';
import {
  CIFAR10_RECORD_BYTES,
  CIFAR10_TEST_FILES,
  CIFAR10_TRAIN_FILES,
  encodeCifar10Batch,
  loadCifar10,
  loadCifar10Batch,
} from '../../core/data/cifar10';
import { IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC, encodeIdx, loadFashionMnist, loadIdxPair, toRgb32 } from '../../core/data/idx';

function tmp(): string {
  return mkdtempSync(path.join(tmpdir(), 'ntml-data-'));
}

/** Raw CIFAR record bytes for pixel values chosen per (record, channel, pixel). */
function cifarRecord(label: number, px: (c: number, p: number) => number): Uint8Array {
  const rec = new Uint8Array(CIFAR10_RECORD_BYTES);
  rec[0] = label;
  for (let c = 0; c < 3; c++) for (let p = 0; p < 1024; p++) rec[1 + c * 1024 + p] = px(c, p);
  return rec;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

test('cifar10: planes are converted to HWC and batches concatenated in order', async (t) => {
  const dir = tmp();
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  // record r of batch b: label (b + r) % 10, channel c pixel p = (p + 50c + 7r + b) % 256
  CIFAR10_TRAIN_FILES.forEach((f, b) => {
    const recs = [0, 1].map((r) => cifarRecord((b + r) % 10, (c, p) => (p + 50 * c + 7 * r + b) % 256));
    writeFileSync(path.join(dir, f), concat(recs));
  });
  writeFileSync(path.join(dir, CIFAR10_TEST_FILES[0]), cifarRecord(9, () => 3));
  writeFileSync(path.join(dir, 'batches.meta.txt'), 'a\nb\nc\nd\ne\nf\ng\nh\ni\nj\n\n');
  const train = await loadCifar10(dir, 'train');
  assert.equal(train.labels.length, 10);
  assert.deepEqual(Array.from(train.labels), [0, 1, 1, 2, 2, 3, 3, 4, 4, 5]);
  assert.equal(train.classNames?.[9], 'j');
  assert.equal(train.images.length, 10 * 3072);
  for (const [k, b, r] of [[0, 0, 0], [3, 1, 1], [9, 4, 1]]) {
    for (const p of [0, 31, 32, 1023]) {
      for (let c = 0; c < 3; c++) {
        assert.equal(train.images[k * 3072 + p * 3 + c], (p + 50 * c + 7 * r + b) % 256, `record ${k} pixel ${p} channel ${c}`);
      }
    }
  }
  const testSet = await loadCifar10(dir, 'test');
  assert.equal(testSet.labels[0], 9);
  assert.equal(testSet.name, 'cifar10:test');
  // writer and reader agree
  const again = encodeCifar10Batch(train);
  writeFileSync(path.join(dir, 'rt.bin'), again);
  const rt = await loadCifar10Batch(path.join(dir, 'rt.bin'));
  assert.deepEqual(rt.images, train.images);
  assert.deepEqual(rt.labels, train.labels);
});

test('cifar10: missing, truncated and mislabelled files give errors naming the file', async (t) => {
  const dir = tmp();
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  await assert.rejects(loadCifar10(dir, 'test'), (e: Error) => {
    assert.ok(e instanceof DatasetError);
    assert.match(e.message, /test_batch\.bin/);
    assert.match(e.message, /not found/);
    return true;
  });
  const file = path.join(dir, 'test_batch.bin');
  writeFileSync(file, concat([cifarRecord(1, () => 0), new Uint8Array(100)]));
  await assert.rejects(loadCifar10(dir, 'test'), (e: Error) => {
    assert.ok(e instanceof DatasetError);
    assert.match(e.message, /test_batch\.bin/);
    assert.match(e.message, /3173/); // its size
    assert.match(e.message, /3073/); // the record size
    assert.match(e.message, /truncated/);
    return true;
  });
  writeFileSync(file, concat([cifarRecord(1, () => 0), cifarRecord(1, () => 0), cifarRecord(10, () => 0)]));
  await assert.rejects(loadCifar10(dir, 'test'), (e: Error) => {
    assert.match(e.message, /test_batch\.bin/);
    assert.match(e.message, /record 2/);
    assert.match(e.message, /label 10/);
    return true;
  });
  writeFileSync(file, new Uint8Array(0));
  await assert.rejects(loadCifar10(dir, 'test'), /test_batch\.bin: file is empty/);
});

function idxFiles(n: number, rows: number, cols: number, labelOf: (i: number) => number) {
  const pixels = new Uint8Array(n * rows * cols);
  for (let i = 0; i < pixels.length; i++) pixels[i] = (i * 13) % 256;
  const labels = Uint8Array.from({ length: n }, (_, i) => labelOf(i));
  return {
    pixels,
    labels,
    images: encodeIdx(IDX_IMAGES_MAGIC, [n, rows, cols], pixels),
    labelFile: encodeIdx(IDX_LABELS_MAGIC, [n], labels),
  };
}

test('idx: raw and gzip files load identically', async (t) => {
  const dir = tmp();
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const f = idxFiles(7, 28, 28, (i) => i % 10);
  writeFileSync(path.join(dir, 'img'), f.images);
  writeFileSync(path.join(dir, 'lbl'), f.labelFile);
  writeFileSync(path.join(dir, 'img.gz'), gzipSync(f.images));
  writeFileSync(path.join(dir, 'lbl.gz'), gzipSync(f.labelFile));
  const raw = await loadIdxPair(path.join(dir, 'img'), path.join(dir, 'lbl'));
  const gz = await loadIdxPair(path.join(dir, 'img.gz'), path.join(dir, 'lbl.gz'));
  for (const ds of [raw, gz]) {
    assert.equal(ds.height, 28);
    assert.equal(ds.width, 28);
    assert.equal(ds.channels, 1);
    assert.equal(ds.numClasses, 10);
    assert.deepEqual(ds.images, f.pixels);
    assert.deepEqual(Array.from(ds.labels), Array.from(f.labels));
  }
});

test('idx: bad magic, truncation, count mismatch and label range are reported with the file', async (t) => {
  const dir = tmp();
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const f = idxFiles(5, 4, 4, (i) => i);
  const img = path.join(dir, 'images-idx3');
  const lbl = path.join(dir, 'labels-idx1');
  writeFileSync(img, f.images);
  writeFileSync(lbl, f.labelFile);
  // swapped: labels file where images are expected -> wrong magic
  await assert.rejects(loadIdxPair(lbl, img), (e: Error) => {
    assert.ok(e instanceof DatasetError);
    assert.match(e.message, /labels-idx1/);
    assert.match(e.message, /magic number 0x00000801, expected 0x00000803/);
    return true;
  });
  writeFileSync(img, f.images.subarray(0, f.images.length - 3));
  await assert.rejects(loadIdxPair(img, lbl), /images-idx3: truncated: header declares 5x4x4 = 80 data bytes, only 77 present/);
  writeFileSync(img, gzipSync(f.images).subarray(0, 20));
  await assert.rejects(loadIdxPair(img, lbl), /images-idx3: .*gzip.*truncated or corrupt/);
  writeFileSync(img, f.images);
  writeFileSync(lbl, encodeIdx(IDX_LABELS_MAGIC, [4], f.labels.subarray(0, 4)));
  await assert.rejects(loadIdxPair(img, lbl), /labels-idx1: holds 4 labels but .*images-idx3 holds 5 images/);
  writeFileSync(lbl, f.labelFile);
  await assert.rejects(loadIdxPair(img, lbl, { numClasses: 4 }), /labels-idx1: record 4 has label 4, expected a label in \[0, 3\]/);
  await assert.rejects(loadIdxPair(path.join(dir, 'nope'), lbl), /nope: file not found; expected an IDX images file/);
});

test('loadFashionMnist finds the standard file names; toRgb32 pads and replicates', async (t) => {
  const dir = tmp();
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const f = idxFiles(3, 28, 28, (i) => 9 - i);
  writeFileSync(path.join(dir, 't10k-images-idx3-ubyte.gz'), gzipSync(f.images));
  writeFileSync(path.join(dir, 't10k-labels-idx1-ubyte'), f.labelFile);
  const ds = await loadFashionMnist(dir, 'test');
  assert.equal(ds.name, 'fashion-mnist:test');
  assert.equal(ds.classNames?.[9], 'Ankle boot');
  assert.deepEqual(Array.from(ds.labels), [9, 8, 7]);
  await assert.rejects(loadFashionMnist(dir, 'train'), /train-images-idx3-ubyte: file not found/);

  const rgb: ImageDataset = toRgb32(ds);
  assert.equal(rgb.height, 32);
  assert.equal(rgb.width, 32);
  assert.equal(rgb.channels, 3);
  assert.deepEqual(rgb.labels, ds.labels);
  for (const i of [0, 2]) {
    for (const [y, x] of [[0, 0], [1, 31], [31, 15], [2, 1], [30, 30]]) {
      for (let c = 0; c < 3; c++) assert.equal(rgb.images[i * 3072 + (y * 32 + x) * 3 + c], 0, `border ${y},${x}`);
    }
    for (const [y, x] of [[0, 0], [13, 20], [27, 27]]) {
      const v = ds.images[i * 784 + y * 28 + x];
      for (let c = 0; c < 3; c++) assert.equal(rgb.images[i * 3072 + ((y + 2) * 32 + x + 2) * 3 + c], v);
    }
  }
});
