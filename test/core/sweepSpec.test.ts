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
    const spec = parseSweepSpec(raw, file);
    const cells = expandSweep(spec);
    // every bench spec says which role its seeds play; the tables are the report-seed ones (101-103)
    if (file.includes(`${path.sep}bench${path.sep}`)) {
      const table = path.basename(file).startsWith('table-');
      assert.equal(raw.seedRole, table ? 'report' : 'dev', `${path.basename(file)} declares seedRole ${table ? 'report' : 'dev'}`);
      if (table) assert.deepEqual([...new Set(cells.map((c) => c.axes.seed))].sort(), [101, 102, 103], path.basename(file));
    }
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

test('seedRole: dev by default; a report spec refuses dev seeds and a dev spec refuses report seeds, naming the field', () => {
  const spec = (over: Record<string, unknown>) => ({ name: 's', base: { ...base, defense: { name: 'none' } }, ...over });
  assert.equal(parseSweepSpec(spec({ grid: { seed: [1, 2, 3] } })).seedRole, 'dev');
  assert.equal(parseSweepSpec(spec({ seedRole: 'report', grid: { seed: [101, 102, 103] } })).seedRole, 'report');
  assert.throws(
    () => parseSweepSpec(spec({ seedRole: 'report', grid: { seed: [1, 101] } })),
    (e: Error) => /grid\.seed: seedRole report: seeds 1 are not report seeds \(report seeds are 100 or above/.test(e.message),
  );
  assert.throws(() => parseSweepSpec(spec({ seedRole: 'report', grid: { seed: { from: 99, to: 101 } } })), /grid\.seed: seedRole report: seeds 99/);
  assert.throws(() => parseSweepSpec(spec({ grid: { seed: [2, 102] } })), /grid\.seed: seedRole dev: seeds 102 are not dev seeds/);
  // without a seed axis the base's seed is the one checked
  assert.throws(() => parseSweepSpec(spec({ seedRole: 'report', base: { ...base, seed: 1 }, grid: {} })), /base\.seed: seedRole report/);
  assert.throws(() => parseSweepSpec(spec({ seedRole: 'final', grid: { seed: [1] } })), /seedRole/);
});
