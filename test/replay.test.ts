/**
 * Determinism guard: every recorded workflow history in test/histories must replay against
 * the current workflow code. A change that alters the command sequence of an existing
 * workflow fails here (put it behind `patched()`), not in production.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { Worker } from '@temporalio/worker';
import { workflowBundle } from '../workers/createWorkers';
import { quietRuntime, repoRoot } from './support/temporal';

quietRuntime();

test('recorded workflow histories replay without nondeterminism', { timeout: 120_000 }, async () => {
  const dir = path.join(repoRoot, 'test', 'histories');
  const files = (await fs.readdir(dir)).filter((f) => f.endsWith('.json')).sort();
  assert.ok(files.length >= 1, 'at least one recorded history is committed');
  const bundle = await workflowBundle();
  for (const file of files) {
    const history = JSON.parse(await fs.readFile(path.join(dir, file), 'utf8'));
    await Worker.runReplayHistory({ workflowBundle: bundle }, history, file.replace(/\.json$/, ''));
  }
});

test('a workflow change that reorders commands is caught by replay', { timeout: 120_000 }, async () => {
  // Replaying the purify history under a workflow that skips straight to another activity
  // must fail: this proves the replay check above has teeth.
  const history = JSON.parse(await fs.readFile(path.join(repoRoot, 'test', 'histories', 'purify-evaluation.json'), 'utf8'));
  const tampered = path.join(repoRoot, 'dist', 'test', 'support', 'tamperedWorkflow.js');
  await assert.rejects(
    Worker.runReplayHistory({ workflowsPath: tampered }, history, 'tampered'),
    (err: Error) => /nondetermin|DeterminismViolation|TMPRL1100/i.test(`${err.name} ${err.message}`),
  );
});
