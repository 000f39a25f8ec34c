import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { Writable } from 'node:stream';
import { PNG } from 'pngjs';

import { generateSyntheticDataset } from '../../core/data/synthetic';
import { parseAttackConfig, getAttack, knownAttacks } from '../../core/attacks/registry';
import { attackPreviewPng, previewIndices } from '../../core/attacks/preview';
import { attackCommand } from '../../cli/attack';

const ds = generateSyntheticDataset({ size: 40, seed: 8, height: 10, width: 12 });
const dir = mkdtempSync(path.join(tmpdir(), 'ntml-preview-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** RGB of pixel (x, y) of a decoded PNG. */
function rgb(png: PNG, x: number, y: number): number[] {
  const o = (y * png.width + x) * 4;
  return [png.data[o], png.data[o + 1], png.data[o + 2]];
}

/** Origin of tile (row r, column k), found from the layout: rows stacked, columns right-aligned. */
function tileOrigin(png: PNG, r: number, k: number, n: number, tileW: number, tileH: number): [number, number] {
  const gap = 4;
  const margin = 8;
  const x0 = png.width - margin - n * (tileW + gap) + gap + k * (tileW + gap);
  const y0 = margin + r * (tileH + gap);
  return [x0, y0];
}

test('preview: rows of clean, triggered and x10 difference tiles of the first non-target images, magnified x4', () => {
  const cfg = parseAttackConfig({ name: 'badnets', target: 1 });
  const n = 5;
  const png = PNG.sync.read(attackPreviewPng(ds, cfg, 3, n));
  const tileW = 48;
  const tileH = 40;
  assert.equal(png.height, 8 + 3 * (tileH + 4) - 4 + 8);
  const picked = previewIndices(ds, cfg, n);
  assert.equal(picked.length, n);
  assert.ok(Array.from(picked).every((i) => ds.labels[i] !== 1), 'target class skipped');
  assert.deepEqual(Array.from(picked), Array.from(ds.labels.keys()).filter((i) => ds.labels[i] !== 1).slice(0, n));
  const trig = getAttack('badnets').applyTrigger(ds, cfg, 3);
  for (let k = 0; k < n; k++) {
    const i = picked[k];
    for (const [r, source] of [[0, ds.images], [1, trig.images]] as const) {
      const [x0, y0] = tileOrigin(png, r, k, n, tileW, tileH);
      for (let y = 0; y < tileH; y++) {
        for (let x = 0; x < tileW; x++) {
          const o = i * 360 + (Math.floor(y / 4) * 12 + Math.floor(x / 4)) * 3;
          assert.deepEqual(rgb(png, x0 + x, y0 + y), [source[o], source[o + 1], source[o + 2]], `row ${r} tile ${k} (${x},${y})`);
        }
      }
    }
    // difference row: zero outside the 3x3 patch (scaled to 12x12), min(255, 10 |d|) inside
    const [x0, y0] = tileOrigin(png, 2, k, n, tileW, tileH);
    for (let y = 0; y < tileH; y++) {
      for (let x = 0; x < tileW; x++) {
        const py = Math.floor(y / 4);
        const px = Math.floor(x / 4);
        const o = i * 360 + (py * 12 + px) * 3;
        const want = py >= 7 && px >= 9 ? [0, 1, 2].map((c) => Math.min(255, 10 * (255 - ds.images[o + c]))) : [0, 0, 0];
        assert.deepEqual(rgb(png, x0 + x, y0 + y), want);
      }
    }
  }
  // some label ink in the left margin, background elsewhere
  let ink = 0;
  for (let y = 0; y < png.height; y++) for (let x = 0; x < 20; x++) if (rgb(png, x, y)[0] > 200) ink++;
  assert.ok(ink > 50, `label text drawn (${ink} px)`);
});

test('preview: a small SIG difference is visible after x10; fewer images than asked is fine; gray data works', () => {
  const gray = generateSyntheticDataset({ size: 6, seed: 2, height: 8, width: 8, channels: 1 });
  const cfg = parseAttackConfig({ name: 'sig', delta: 5, frequency: 1, target: gray.labels[0] });
  const n = Array.from(gray.labels).filter((y) => y !== cfg.target).length;
  const png = PNG.sync.read(attackPreviewPng(gray, cfg, 0, 50, { scale: 2 }));
  const tile = 16;
  const rowH = 16; // label glyphs (14 px) fit in a 16 px row
  assert.equal(png.width, 8 + (Math.max(...['CLEAN', 'TRIGGERED', '|DIFF| X10'].map((s) => s.length)) * 12 + 8) + n * (tile + 4) - 4 + 8);
  // column x = 2 of the first tile: |5 sin(pi/2)| * 10 = 50 in the difference row
  const [x0, y0] = tileOrigin(png, 2, 0, n, tile, rowH);
  assert.deepEqual(rgb(png, x0 + 2 * 2, y0), [50, 50, 50]);
  assert.deepEqual(rgb(png, x0, y0), [0, 0, 0]);
  assert.throws(() => attackPreviewPng(gray, cfg, 0, 0), /count/);
});

class Capture extends Writable {
  text = '';
  override _write(chunk: Buffer, _enc: string, cb: () => void): void {
    this.text += chunk.toString();
    cb();
  }
}

async function cli(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const stdout = new Capture();
  const stderr = new Capture();
  const code = await attackCommand(argv, { stdout, stderr });
  return { code, out: stdout.text, err: stderr.text };
}

test('ntml attack list: every attack with its kind and defaults', async () => {
  const r = await cli(['list']);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /^badnets +dirty-label$/m);
  assert.match(r.out, /^blended +dirty-label$/m);
  assert.match(r.out, /^sig +clean-label$/m);
  assert.match(r.out, /^wanet +dirty-label$/m);
  assert.match(r.out, /defaults: .*alpha=0\.2 patternSeed=0/);
  assert.match(r.out, /defaults: .*delta=40 frequency=6/);
  assert.match(r.out, /defaults: .*k=4 s=0\.5 crossRatio=2/);
});

test('ntml attack preview: writes the PNG; config file merges with --attack; errors exit 2 naming the field', async () => {
  const out = path.join(dir, 'sub', 'wanet.png');
  const r = await cli(['preview', '--attack', 'wanet', '--seed', '3', '--count', '3', '--out', out]);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /wrote .*wanet\.png/);
  const png = PNG.sync.read(readFileSync(out));
  assert.equal(png.height, 8 + 3 * 132 - 4 + 8);

  const yaml = path.join(dir, 'blended.yaml');
  writeFileSync(yaml, 'name: blended\nalpha: 0.5\n');
  const out2 = path.join(dir, 'blended.png');
  const r2 = await cli(['preview', '--config', yaml, '--out', out2, '--count', '2']);
  assert.equal(r2.code, 0, r2.err);
  assert.match(r2.out, /"alpha":0\.5/);

  const bad = path.join(dir, 'bad.yaml');
  writeFileSync(bad, 'alpha: 3\n');
  const r3 = await cli(['preview', '--attack', 'blended', '--config', bad, '--out', path.join(dir, 'x.png')]);
  assert.equal(r3.code, 2);
  assert.match(r3.err, /attack config: alpha:/);
  assert.ok(!existsSync(path.join(dir, 'x.png')));

  const r4 = await cli(['preview', '--attack', 'sig', '--config', yaml, '--out', path.join(dir, 'x.png')]);
  assert.equal(r4.code, 2);
  assert.match(r4.err, /disagrees/);
  assert.equal((await cli(['preview', '--attack', 'nope', '--out', path.join(dir, 'x.png')])).code, 2);
  assert.match((await cli(['preview', '--attack', 'nope', '--out', path.join(dir, 'x.png')])).err, /name: unknown attack/);
  assert.match((await cli(['preview', '--attack', 'badnets'])).err, /--out/);
  assert.match((await cli(['preview', '--attack', 'badnets', '--data', 'mnist', '--out', path.join(dir, 'x.png')])).err, /--data/);
  for (const learned of ['narcissus', 'inputaware'].filter((n) => knownAttacks().includes(n))) {
    const r5 = await cli(['preview', '--attack', learned, '--out', path.join(dir, 'x.png')]);
    assert.equal(r5.code, 2);
    assert.match(r5.err, /learned .*--run ID.* preview works for .*wanet/);
  }
  // --run takes the attack, seed and data from the run: combining them is refused before any connection
  const r6 = await cli(['preview', '--run', 'some-run', '--attack', 'badnets', '--out', path.join(dir, 'x.png')]);
  assert.equal(r6.code, 2);
  assert.match(r6.err, /--attack cannot be combined with --run/);
  const r7 = await cli(['preview', '--attack', 'badnets', '--address', '127.0.0.1:7233', '--out', path.join(dir, 'x.png')]);
  assert.equal(r7.code, 2);
  assert.match(r7.err, /--address and --namespace go with --run/);
  assert.equal((await cli(['frobnicate'])).code, 2);
  assert.equal((await cli([])).code, 2);
});
