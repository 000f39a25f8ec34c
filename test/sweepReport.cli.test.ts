/**
 * `ntml sweep report` (a child process on a filesystem store) takes the seed role from the
 * sweep's stored spec: a report-seed table refuses dev-seed cells even when every cell has a dev
 * seed, so the cells' seeds alone would pass as a dev table. Only the stored spec's cell ids enter
 * the report (a store that also holds the same cells under older ids counts them once).
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { FileArtifactStore } from '../store/index';
import type { SweepCellRecord } from '../workflows/contract';
import { runNtml } from './support/processes';

const ntml = (args: string[], store: string) => runNtml(args, { env: { ...process.env, NTML_STORE: store } });

function cell(sweep: string, seed: number): SweepCellRecord {
  return {
    sweep,
    cellId: `c${seed}`,
    axes: { attack: 'badnets', defense: 'ntml', seed, cleanBudget: '100', model: 'cnn' },
    config: {},
    status: 'completed',
    workflowId: `wf-${seed}`,
    startedAt: 1_000_000,
    endedAt: 1_010_000,
    metrics: { standard: { acc: 93, asr: 95 }, final: { acc: 90, asr: 2 } },
    der: 96,
  };
}

/** A store holding sweep `sweep` with cells at `seeds` and a stored spec declaring `seedRole` (or none). */
async function sweepStore(sweep: string, seeds: number[], seedRole: unknown): Promise<string> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ntml-sweep-report-'));
  const store = new FileArtifactStore(dir);
  const spec = { name: sweep, base: {}, grid: { seed: seeds }, ...(seedRole === undefined ? {} : { seedRole }) };
  await store.putRecord(`sweeps/${sweep}/spec`, { spec, cellIds: seeds.map((s) => `c${s}`), writtenAt: '2026-01-01T00:00:00.000Z' });
  for (const s of seeds) await store.putRecord(`sweeps/${sweep}/cells/c${s}`, cell(sweep, s));
  return dir;
}

test('a report-role spec refuses dev-seed cells, though the seeds alone would make a dev table', { timeout: 120_000 }, async () => {
  const store = await sweepStore('tbl', [1, 2], 'report');
  const out = path.join(store, 'report');
  const r = await ntml(['sweep', 'report', 'tbl', '--out', out], store);
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /sweep tbl: .*is a report-seed table but has dev-seed cells \(seeds 1, 2\)/);
  assert.doesNotMatch(r.stderr, /\n\s+at .+:\d+:\d+/, 'no stack trace');
  assert.equal(existsSync(path.join(out, 'report.md')), false, 'no report written');
});

test('the same cells under a dev-role spec, or a spec without a role, report as a dev table', { timeout: 120_000 }, async () => {
  for (const role of ['dev', undefined]) {
    const store = await sweepStore('screen', [1, 2], role);
    const out = path.join(store, 'report');
    const r = await ntml(['sweep', 'report', 'screen', '--out', out], store);
    assert.equal(r.code, 0, `role ${role}: ${r.stderr}`);
    assert.equal(JSON.parse(readFileSync(path.join(out, 'report.json'), 'utf8')).seedRole, 'dev', `role ${role}`);
  }
});

test('a stored spec with an unknown seed role is refused, naming the record and field', { timeout: 120_000 }, async () => {
  const store = await sweepStore('odd', [1], 'final');
  const r = await ntml(['sweep', 'report', 'odd', '--out', path.join(store, 'report')], store);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /sweeps\/odd\/spec: spec\.seedRole is "final", expected one of dev, report/);
});

test('records under cell ids the stored spec does not list (older, path-hashed ids) are left out of the report and counted', { timeout: 120_000 }, async () => {
  const store = await sweepStore('moved', [101, 102, 103], 'report');
  // the same cell as c101, stored under the id it had before ids hashed the data's content
  await new FileArtifactStore(store).putRecord('sweeps/moved/cells/old101', { ...cell('moved', 101), cellId: 'old101', der: 10 });
  const out = path.join(store, 'report');
  const r = await ntml(['sweep', 'report', 'moved', '--out', out], store);
  assert.equal(r.code, 0, r.stderr);
  const json = JSON.parse(readFileSync(path.join(out, 'report.json'), 'utf8'));
  assert.equal(json.superseded, 1);
  assert.equal(json.rows[0].n, 3);
  assert.equal(json.rows[0].der.mean, 96, 'the older record did not enter the mean');
  assert.match(r.stdout, /1 stored cell record under cell ids that are not the spec's/);
});
