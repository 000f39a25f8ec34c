/** `ntml data pack|inspect` through bin/ntml: an image folder becomes the .ntds file the loaders read. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync, existsSync, readdirSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { decodeDatasetWithMeta } from '../core/data/codec';
import { loadImageFolder } from '../core/data/imageFolder';

const REPO = path.resolve(__dirname, '..', '..');
const BIN = path.join(REPO, 'bin', 'ntml');
const ntml = (...args: string[]) => spawnSync(BIN, args, { cwd: REPO, encoding: 'utf8', timeout: 60_000 });

function imageFolder(): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ntml-cli-data-'));
  for (const [cls, value] of [['stop', 40], ['yield', 160]] as const) {
    mkdirSync(path.join(dir, 'images', cls), { recursive: true });
    for (let i = 0; i < 3; i++) writeFileSync(path.join(dir, 'images', cls, `${i}.ppm`), Buffer.concat([Buffer.from('P6 20 10 255\n'), Buffer.alloc(600, value + i)]));
  }
  return dir;
}

test('ntml data pack writes the folder as an .ntds file equal to what the imageFolder loader reads; inspect counts it', async () => {
  const dir = imageFolder();
  const out = path.join(dir, 'packed', 'train.ntds');
  const r = ntml('data', 'pack', path.join(dir, 'images'), '--out', out, '--size', '8');
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /packed 6 images \(8x8x3, 2 classes\)/);
  const { dataset, meta } = decodeDatasetWithMeta(new Uint8Array(readFileSync(out)), out);
  const direct = await loadImageFolder(path.join(dir, 'images'), { size: 8, channels: 3 });
  assert.deepEqual(dataset.images, direct.images);
  assert.deepEqual(dataset.labels, direct.labels);
  assert.deepEqual(dataset.classNames, ['stop', 'yield']);
  assert.equal(meta?.packedFrom, 'images');

  const inspect = ntml('data', 'inspect', out);
  assert.equal(inspect.status, 0, inspect.stderr);
  assert.match(inspect.stdout, /6 images, 8x8x3, 2 classes/);
  assert.match(inspect.stdout, /^\s+0 stop\s+3$/m);
  assert.match(inspect.stdout, /^\s+1 yield\s+3$/m);
  const folder = ntml('data', 'inspect', path.join(dir, 'images'), '--channels', '1', '--classes', 'yield,stop,other');
  assert.equal(folder.status, 0, folder.stderr);
  assert.match(folder.stdout, /32x32x1, 3 classes/);
  assert.match(folder.stdout, /^\s+0 yield\s+3$/m);
  assert.match(folder.stdout, /1 classes without images/);

  // an existing file is kept unless --force, and a failed pack leaves nothing behind
  const before = readFileSync(out);
  const again = ntml('data', 'pack', path.join(dir, 'images'), '--out', out, '--size', '16');
  assert.equal(again.status, 2);
  assert.match(again.stderr, /exists; pass --force/);
  assert.deepEqual(readFileSync(out), before);
  writeFileSync(path.join(dir, 'images', 'stop', 'bad.png'), 'not a png');
  const broken = ntml('data', 'pack', path.join(dir, 'images'), '--out', out, '--force');
  assert.equal(broken.status, 2);
  assert.match(broken.stderr, /bad\.png is not a readable image/);
  assert.deepEqual(readFileSync(out), before, 'the old file is untouched');
  assert.deepEqual(readdirSync(path.dirname(out)), ['train.ntds'], 'no temporary file left');
});

test('ntml data: bad options and paths exit 2 naming the option', () => {
  const dir = imageFolder();
  const cases: Array<[string[], RegExp]> = [
    [['data'], /missing data subcommand/],
    [['data', 'unpack'], /unknown data subcommand "unpack"/],
    [['data', 'pack', path.join(dir, 'images')], /--out FILE is required/],
    [['data', 'pack', path.join(dir, 'images'), '--out', path.join(dir, 'x.ntds'), '--size', 'big'], /--size needs a whole number/],
    [['data', 'pack', path.join(dir, 'images'), '--out', path.join(dir, 'x.ntds'), '--channels', '4'], /--channels: /],
    [['data', 'inspect', path.join(dir, 'nowhere')], /nowhere: no such file or folder/],
    [['data', 'pack', path.join(dir, 'images', 'stop', '0.ppm'), '--out', path.join(dir, 'x.ntds')], /0\.ppm: not a folder; pack takes a folder of images/],
    [['data', 'inspect', path.join(dir, 'images', 'stop', '0.ppm')], /0\.ppm/],
  ];
  for (const [args, message] of cases) {
    const r = ntml(...args);
    assert.equal(r.status, 2, `${args.join(' ')}: exit ${r.status}\n${r.stderr}`);
    assert.match(r.stderr, message, args.join(' '));
    assert.doesNotMatch(r.stderr, /\n\s+at .+:\d+:\d+\)/, 'no stack trace');
  }
  assert.ok(!existsSync(path.join(dir, 'x.ntds')));
});

test('ntml data: a folder, label file or data set it cannot read is named, with what to do', () => {
  const dir = imageFolder();
  const images = path.join(dir, 'images');
  mkdirSync(path.join(dir, 'empty'));
  mkdirSync(path.join(dir, 'tiffs', 'stop'), { recursive: true });
  for (const f of ['a.tiff', 'b.tiff']) writeFileSync(path.join(dir, 'tiffs', 'stop', f), 'II*\0');
  const csv = (name: string, text: string) => {
    writeFileSync(path.join(dir, name), text);
    return path.join(dir, name);
  };
  const packed = path.join(dir, 'packed.ntds');
  assert.equal(ntml('data', 'pack', images, '--out', packed, '--size', '8').status, 0);
  const cut = path.join(dir, 'cut.ntds');
  writeFileSync(cut, readFileSync(packed).subarray(0, readFileSync(packed).length - 10));
  const cases: Array<[string[], RegExp]> = [
    [['data', 'pack', path.join(dir, 'nowhere'), '--out', path.join(dir, 'x.ntds')], /^ntml: DIR: \S*nowhere: no such folder \(check the path; pack takes a folder of images, one subfolder per class\)$/m],
    [['data', 'pack', path.join(dir, 'empty'), '--out', path.join(dir, 'x.ntds')], /DIR: \S*empty has no class subfolders: put each class's images in a subfolder of their own .*or name a CSV of file names and class ids with --labels$/m],
    [['data', 'inspect', path.join(dir, 'tiffs')], /PATH: \S*tiffs holds no image of a type ntml reads \(\.png, .*\), only other files \(2 \.tiff\): convert them, e\.g\. to PNG/],
    [['data', 'inspect', path.join(images, 'stop'), '--labels', csv('bad.csv', 'Filename,ClassId\n0.ppm,stop\n')], /--labels: \S*bad\.csv row 2 \("0\.ppm,stop"\): class id "stop" is not a whole number >= 0: fix the row/],
    [['data', 'inspect', path.join(images, 'stop'), '--labels', csv('cols.csv', 'name;class\n0.ppm;1\n')], /--labels: \S*cols\.csv header "name;class" needs a file column .*e\.g\. "Filename,ClassId"/],
    [['data', 'inspect', path.join(images, 'stop'), '--labels', csv('gone.csv', 'Filename,ClassId\n0.ppm,0\ngone.ppm,1\n')], /--labels: \S*gone\.csv row 3 names gone\.ppm, which is not in \S*stop \(names are relative to that folder\)/],
    [['data', 'inspect', path.join(dir, 'tiffs', 'stop'), '--labels', csv('t.csv', 'Filename,ClassId\na.tiff,0\n')], /PATH: \S*a\.tiff: unknown image type "\.tiff" \(ntml reads \.png, .*\): convert it, e\.g\. to PNG/],
    [['data', 'inspect', path.join(dir, 'bad.csv')], /bad\.csv: not an ntml dataset file .*; PATH must be an \.ntds file \(ntml data pack writes one\), a CIFAR-10 \.bin batch or an image folder/],
    [['data', 'inspect', cut], /cut\.ntds: truncated: .*: the file is damaged or cut short; copy it again, or pack it again from its images/],
  ];
  for (const [args, message] of cases) {
    const r = ntml(...args);
    assert.equal(r.status, 2, `${args.join(' ')}: exit ${r.status}\n${r.stderr}`);
    assert.match(r.stderr, message, args.join(' '));
    assert.doesNotMatch(r.stderr, /\n\s+at .+:\d+:\d+\)/, 'no stack trace');
  }
});
