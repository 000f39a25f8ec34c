/** Sweep spec expansion (pure): the defense axis and the base's defense. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { expandSweep, parseSweepSpec } from '../../schemas/sweep';
import { readConfigFile, substituteAutoData } from '../../cli/config';

const base = { mode: 'evaluation', tier: 'ci', data: { format: 'synthetic' }, attack: { name: 'badnets' } };

test('expandSweep: without a defense axis the cells keep the base defense', () => {
  const cells = expandSweep(parseSweepSpec({ name: 's', base: { ...base, defense: { name: 'none' } }, grid: { seed: [1, 2] } }));
  assert.equal(cells.length, 2);
  assert.ok(cells.every((c) => (c.config.defense as { name: string }).name === 'none' && c.axes.defense === 'none'));
  const ntml = expandSweep(parseSweepSpec({ name: 's', base, grid: { seed: [1] } }));
  assert.equal((ntml[0].config.defense as { name: string }).name, 'ntml');
});

test('expandSweep: baseline settings sit beside the name and label the cell', () => {
  const cells = expandSweep(parseSweepSpec({ name: 's', base, grid: { defense: [{ name: 'ft', steps: 20 }, { name: 'ntml', ntml: { ntLabel: 'hard' } }] } }));
  assert.deepEqual(cells.map((c) => c.axes.defense), ['ft(steps=20)', 'ntml(ntLabel=hard)']);
  assert.deepEqual(cells[0].config.defense, { name: 'ft', steps: 20 });
  assert.throws(() => parseSweepSpec({ name: 's', base, grid: { defense: [{ name: 'ft', ntml: { tau: 2 } }] } }), /NT-ML switches given to defense ft/);
});

test('every committed sweep spec (bench/specs, examples) is valid and expands to the cell count its header states', () => {
  const repo = path.resolve(__dirname, '..', '..', '..');
  const files = [
    ...readdirSync(path.join(repo, 'bench', 'specs')).map((f) => path.join(repo, 'bench', 'specs', f)),
    path.join(repo, 'examples', 'sweep.yaml'),
  ].filter((f) => /\.ya?ml$/.test(f));
  assert.ok(files.length >= 6, `found ${files.length} spec files`);
  // `data: {format: auto}` without a CIFAR-10 folder resolves to synthetic data: the grid is what is checked
  const env = { NTML_CIFAR10_DIR: '', NTML_GTSRB_DIR: '/data/gtsrb' };
  for (const file of files) {
    const raw = readConfigFile(file) as Record<string, unknown>;
    raw.base = substituteAutoData(raw.base as Record<string, unknown>, env, file).raw;
    const cells = expandSweep(parseSweepSpec(raw, file));
    const stated = readFileSync(file, 'utf8').match(/= (\d+) cells/);
    if (stated) assert.equal(cells.length, Number(stated[1]), `${path.basename(file)} states ${stated[1]} cells`);
    assert.ok(cells.length > 0, path.basename(file));
  }
  // with CIFAR-10 there, the paper tier trains on the whole training split and the cpu tier on its 20k subset
  const cifar = mkdtempSync(path.join(tmpdir(), 'ntml-cifar-'));
  writeFileSync(path.join(cifar, 'data_batch_1.bin'), '');
  const dataOf = (spec: string) => {
    const raw = readConfigFile(path.join(repo, 'bench', 'specs', spec)) as Record<string, unknown>;
    return substituteAutoData(raw.base as Record<string, unknown>, { NTML_CIFAR10_DIR: cifar }, spec).raw.data as Record<string, unknown>;
  };
  assert.deepEqual(dataOf('table-paper.yaml'), { format: 'cifar10', path: cifar });
  assert.equal(dataOf('table-cpu.yaml').trainSubset, 20000);
  const raw = readConfigFile(path.join(repo, 'bench', 'specs', 'table-paper-gtsrb.yaml')) as Record<string, unknown>;
  const gtsrb = substituteAutoData(raw.base as Record<string, unknown>, { NTML_GTSRB_DIR: '/data/gtsrb' }, 'gtsrb').raw.data;
  assert.deepEqual(gtsrb, { format: 'gtsrb', size: 32, path: path.resolve('/data/gtsrb') });
});
