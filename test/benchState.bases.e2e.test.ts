/**
 * Bench state against bases, on the real stack through bench/run-cpu.sh (bench/state/README.md,
 * "Bases and the budget"): three ci-tier specs in a fixed order, as attacks-cpu, a screen on its
 * backdoored models and the table are. The first machine runs them and exports each against the
 * specs before it; the third under --keep-stages none (cell records only). A second machine,
 * with nothing but the bundles, imports the bases first, finds every cell finished, regenerates
 * the same reports (the records-only spec's too) and exports the same bytes. A third refuses the
 * dependent bundle alone, naming the base to import first, and writes nothing. Last, the base is
 * exported again without what the dependent relies on: the sitting's check catches it and
 * exports the dependent again, which then carries it itself.
 */
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

import assert from 'node:assert/strict';
import { promises as fsp, readFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { decodeBundle } from '../store/index';
import { benchSitting, ntmlOnMachine, tinyBenchSpec } from './support/benchSitting';

const SPECS = {
  'tiny-base': tinyBenchSpec('tiny-base', '[{ name: none }]'),
  'tiny-dep': tinyBenchSpec('tiny-dep', '[{ name: none }, { name: ft, steps: 10, rounds: 2 }]'),
  'tiny-table': tinyBenchSpec('tiny-table', '[{ name: ft, steps: 6, rounds: 1 }]'),
};
const ORDER = { BENCH_ORDER: 'tiny-base tiny-dep tiny-table', BENCH_KEEP_STAGES: 'tiny-table:none' };

test('run-cpu.sh exports each spec against the earlier ones; a fresh machine imports them in order, and a dependent alone is refused', { timeout: 1_200_000 }, async () => {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'ntml-bench-bases-e2e-'));
  await fsp.mkdir(path.join(dir, 'specs'));
  for (const [name, text] of Object.entries(SPECS)) await fsp.writeFile(path.join(dir, 'specs', `${name}.yaml`), text);
  const stateFile = (name: string) => path.join(dir, 'state', `${name}.ntmlb`);
  const reportFile = (name: string) => path.join(dir, 'results', name, 'report.md');

  const first = await benchSitting(dir, path.join(dir, 'stack-a'), [], ORDER);
  assert.equal(first.code, 0, first.out);
  assert.match(first.out, /every relied-on entry is carried by its base/);
  const bytes = Object.fromEntries(Object.keys(SPECS).map((n) => [n, readFileSync(stateFile(n))]));
  const bundles = Object.fromEntries(await Promise.all(Object.keys(SPECS).map(async (n) => [n, await decodeBundle(bytes[n], n)] as const)));

  // the dependent leaves the backdoored model and its entry to the base, and names it
  const base = bundles['tiny-base'];
  const dep = bundles['tiny-dep'];
  const standardEntry = base.records.find((r) => r.key.startsWith('cache/standardTraining/'));
  assert.ok(standardEntry, base.manifest.records.map((r) => r.key).join('\n'));
  assert.ok(!dep.records.some((r) => r.key === standardEntry.key), 'the shared standardTraining entry is not in tiny-dep');
  const depBases = dep.manifest.selection.bases as Array<{ bundle: string; artifacts: string[]; records: Array<{ key: string }> }>;
  assert.deepEqual(depBases.map((b) => b.bundle), ['tiny-base.ntmlb']);
  assert.ok(depBases[0].records.some((r) => r.key === standardEntry.key));
  const baseShas = new Set(base.artifacts.map((a) => a.sha256));
  assert.ok(depBases[0].artifacts.length > 0 && depBases[0].artifacts.every((s) => baseShas.has(s)));
  assert.ok(!dep.artifacts.some((a) => baseShas.has(a.sha256)), 'no artifact of the base is carried twice');
  assert.ok(dep.records.some((r) => r.key.startsWith('cache/defense/')), "FT's entry is tiny-dep's own");

  // the records-only spec: its cell and report, not its purified model
  const table = bundles['tiny-table'];
  assert.deepEqual(table.records.map((r) => r.key.split('/').slice(0, 3).join('/')), ['sweeps/tiny-table/cells', 'sweeps/tiny-table/spec']);
  const cell = JSON.parse(Buffer.from(table.records[0].data).toString('utf8')) as { status: string; purifiedModel: { sha256: string } };
  assert.equal(cell.status, 'completed');
  assert.ok(!table.artifacts.some((a) => a.sha256 === cell.purifiedModel.sha256), 'the purified model is left out');
  assert.deepEqual((table.manifest.selection.leftOutModels as Array<{ sha256: string }>).map((m) => m.sha256), [cell.purifiedModel.sha256]);
  const reports = Object.fromEntries(Object.keys(SPECS).map((n) => [n, readFileSync(reportFile(n), 'utf8')]));

  // another machine: the bundles alone
  await fsp.rm(path.join(dir, 'results'), { recursive: true });
  const second = await benchSitting(dir, path.join(dir, 'stack-b'), [], ORDER);
  assert.equal(second.code, 0, second.out);
  assert.match(second.out, /importing the base .*tiny-base\.ntmlb[\s\S]*importing .*tiny-dep\.ntmlb/);
  assert.match(second.out, /the bundle left out 1 purified models of finished cells \(--keep-stages\)/);
  assert.match(second.out, /1\/1 cells completed \(1 found finished\)[\s\S]*2\/2 cells completed \(2 found finished\)[\s\S]*1\/1 cells completed \(1 found finished\)/);
  for (const name of Object.keys(SPECS)) {
    assert.ok(readFileSync(stateFile(name)).equals(bytes[name]), `the second machine exported other bytes for ${name}`);
    assert.equal(readFileSync(reportFile(name), 'utf8'), reports[name], `the regenerated report of ${name} differs`);
  }

  // a third machine given only the dependent: refused, naming the base, and nothing written
  const lone = await ntmlOnMachine(path.join(dir, 'stack-c'), ['store', 'import', stateFile('tiny-dep')]);
  assert.notEqual(lone.code, 0, lone.out);
  assert.match(lone.out, /relies on its base tiny-base\.ntmlb \(sweep tiny-base\)[^\n]*import tiny-base\.ntmlb first; nothing was written/);
  const listed = await ntmlOnMachine(path.join(dir, 'stack-c'), ['store', 'gc', '--dry-run']);
  assert.match(listed.out, /0 referenced, 0 unreferenced/, listed.out);

  // the base exported again without what its dependents rely on (a records-only policy for it):
  // the sitting exports them again from its store, which still holds it, and the folder checks
  const dropped = depBases[0].artifacts;
  const third = await benchSitting(dir, path.join(dir, 'stack-b'), ['tiny-base'], { ...ORDER, BENCH_KEEP_STAGES: 'tiny-base:none tiny-table:none' });
  assert.equal(third.code, 0, third.out);
  assert.match(third.out, /check: tiny-dep\.ntmlb relies on \d+ artifacts and 1 records that its base tiny-base\.ntmlb no longer carries/);
  assert.match(third.out, /exporting tiny-dep again against its current bases/);
  assert.match(third.out, /every relied-on entry is carried by its base/);
  const repaired = await decodeBundle(readFileSync(stateFile('tiny-dep')), 'tiny-dep');
  assert.ok(repaired.records.some((r) => r.key === standardEntry.key), 'tiny-dep carries the shared entry itself now');
  const repairedShas = new Set(repaired.artifacts.map((a) => a.sha256));
  const stillInBase = new Set((await decodeBundle(readFileSync(stateFile('tiny-base')), 'tiny-base')).artifacts.map((a) => a.sha256));
  assert.ok(dropped.every((s) => repairedShas.has(s) || stillInBase.has(s)), 'every artifact it relied on is in it or still in the base');
});
