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
