/**
 * What must never be committed (DEVELOPERS.md): installed packages, native tools, build output,
 * data sets and large weights, absolute paths of a developer's machine. A symlink to a
 * worktree's node_modules once slipped through a `.gitignore` entry with a trailing slash
 * (which matches directories only); this catches that and its relatives.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import * as path from 'node:path';

const REPO = path.resolve(__dirname, '..', '..');
const GENERATED = ['node_modules', '.tools', 'dist', '.ntml', 'runs', '.cache', '.scratch'];
const MAX_BYTES = 2 * 2 ** 20;
// the benchmark's own state (bench/state/README.md): bundles without data sets, 60 MB in all
const BENCH_STATE = /^bench\/state\/[^/]+\.ntmlb$/;
const BENCH_STATE_BUDGET = 60 * 2 ** 20;

test('the repository tracks no generated folders, no symlinks out of the tree and no large files', (t) => {
  if (!existsSync(path.join(REPO, '.git'))) {
    t.skip('not a git checkout (nothing to check)');
    return;
  }
  // mode, object, stage, path for every tracked entry
  const entries = execFileSync('git', ['ls-files', '-s', '-z'], { cwd: REPO, encoding: 'utf8' })
    .split('\0')
    .filter(Boolean)
    .map((line) => {
      const [meta, file] = line.split('\t');
      return { mode: meta.split(' ')[0], object: meta.split(' ')[1], file };
    });
  assert.ok(entries.length > 100, `git ls-files found ${entries.length} entries`);
  const generated = entries.filter((e) => GENERATED.includes(e.file.split('/')[0]));
  assert.deepEqual(generated.map((e) => e.file), [], 'generated or installed paths are tracked');
  const links = entries.filter((e) => e.mode === '120000');
  for (const link of links) {
    const target = execFileSync('git', ['cat-file', 'blob', link.object], { cwd: REPO, encoding: 'utf8' });
    assert.ok(!path.isAbsolute(target) && !path.normalize(path.join(path.dirname(link.file), target)).startsWith('..'), `${link.file} links to ${target}, outside the repository`);
  }
  const size = (file: string) => (existsSync(path.join(REPO, file)) ? statSync(path.join(REPO, file)).size : 0);
  const large = entries.filter((e) => e.mode !== '120000' && !BENCH_STATE.test(e.file) && size(e.file) > MAX_BYTES);
  assert.deepEqual(large.map((e) => e.file), [], `tracked files over ${MAX_BYTES / 2 ** 20} MiB`);
  const benchState = entries.filter((e) => BENCH_STATE.test(e.file)).reduce((n, e) => n + size(e.file), 0);
  assert.ok(benchState <= BENCH_STATE_BUDGET, `bench/state/ holds ${(benchState / 2 ** 20).toFixed(1)} MiB, over its ${BENCH_STATE_BUDGET / 2 ** 20} MiB budget`);
});
