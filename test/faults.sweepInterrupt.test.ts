/**
 * `ntml sweep start` stopped from outside, on its own embedded stack (in a temporary folder),
 * with the two training worker processes it starts there:
 *  - Ctrl-C (SIGINT) while a cell trains: exit 130, no uncaught error (it used to crash with
 *    grpc-js' "Channel has been shut down" and exit 1), no worker process of that command left;
 *    the same command again finishes the sweep and reuses the cells finished before;
 *  - SIGKILL of the command: its training workers exit on their own within a bound.
 * And the parent watch alone (workers/parentWatch.ts): a training worker whose NTML_PARENT_PID
 * process dies stops, even when no watchdog shell sits around it.
 */
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, test } from 'node:test';
import { spawnTrainingWorker, taskQueues, waitForExit } from './support/temporal';
import { CRASH_TEXT, NTML_BIN as NTML, embeddedEnv, isRunning, sleep, spawnedProcesses, trainingWorkersOf, waitFor } from './support/processes';
import { parentPidFromEnv } from '../workers/parentWatch';
import type { SweepSpecInput } from '../schemas/sweep';

/** the embedded training processes' shutdown grace (cli/trainingProcesses.ts) plus the parent watch's 5 s, plus slack for a loaded 2-core machine */
const WORKER_EXIT_BOUND_MS = 30_000;

const processes = spawnedProcesses();
const start = processes.spawn;
const tmp = path.join(os.tmpdir(), `ntml-faults-sweep-interrupt-${process.pid}`);

after(async () => {
  await processes.killAll();
  await fsp.rm(tmp, { recursive: true, force: true });
});

/** The pids the command printed for its training worker processes. */
function listedWorkers(output: string): number[] {
  const m = output.match(/training worker processes \(pids ([\d, ]+);/);
  assert.ok(m, `no training worker processes line:\n${output}`);
  return m[1].split(', ').map(Number);
}

/** Milliseconds until no training worker of `parentPid` is left; fails past the bound. */
async function workersGone(parentPid: number, listed: number[], what: string): Promise<number> {
  const t0 = Date.now();
  const alive = () => [...new Set([...listed.filter(isRunning), ...trainingWorkersOf(parentPid)])];
  await waitFor(() => alive().length === 0, WORKER_EXIT_BOUND_MS, () => `the training workers of ${what} to exit (left: ${alive().join(', ')})`);
  return Date.now() - t0;
}

/** Three ci-tier cells with their own standard training each (seeds differ), two at a time. */
function spec(name: string): SweepSpecInput {
  return {
    name,
    base: {
      mode: 'evaluation',
      tier: 'ci',
      data: { format: 'synthetic', trainSize: 400, testSize: 200 },
      cleanBudget: 50,
      training: { epochs: 2 },
      ntml: { ntEpochs: 1, mlEpochs: 4, splitEpochs: 1, diagnosticSamples: 50 },
    },
    grid: { attack: [{ name: 'badnets' }], defense: [{ name: 'ntml' }], seed: [1, 2, 3] },
    concurrency: 2,
  };
}

test('Ctrl-C of ntml sweep start mid-cell: exit 130, no uncaught error, no training worker left; the same command then finishes, reusing the finished cells', { timeout: 900_000 }, async () => {
  const dir = path.join(tmp, 'interrupt');
  await fsp.mkdir(dir, { recursive: true });
  const specFile = path.join(dir, 'sweep.json');
  await fsp.writeFile(specFile, JSON.stringify(spec(`interrupt-${Date.now().toString(36)}`)));
  const args = [NTML, 'sweep', 'start', '--spec', specFile, '--stack-dir', path.join(dir, 'stack'), '--training-processes', '2', '--out', path.join(dir, 'report')];

  const first = start(args, embeddedEnv(), dir);
  // one cell finished and others running: Ctrl-C lands in the middle of a cell
  const progress = () => [...first.output().matchAll(/: (\d)\/3 done, (\d) running/g)].at(-1);
  await waitFor(() => first.exitCode !== null || Boolean(progress() && Number(progress()![1]) >= 1 && Number(progress()![2]) >= 1), 600_000, () => `one cell done, another running:\n${first.output()}`);
  assert.equal(first.exitCode, null, first.output());
  const doneBefore = Number(progress()![1]);
  const workers = listedWorkers(first.output());
  assert.equal(workers.length, 2);
  const found = trainingWorkersOf(first.pid!);
  first.kill('SIGINT');
  const code = await first.exited;
  assert.equal(code, 130, first.output());
  assert.doesNotMatch(first.output(), CRASH_TEXT);
  assert.match(first.output(), /stopped\. The same command continues it/);
  // the listed workers, and the watchdog shells around them (same environment and arguments)
  assert.ok(workers.every((pid) => found.includes(pid)), `the listed workers ${workers.join(', ')} are found by their NTML_PARENT_PID: ${found.join(', ')}`);
  const goneMs = await workersGone(first.pid!, workers, 'the interrupted command');
  console.log(`SIGINT with ${doneBefore}/3 done: exit 130; its training workers were gone ${goneMs} ms after it exited`);

  const again = start(args, embeddedEnv(), dir);
  assert.equal(await again.exited, 0, again.output());
  const summary = again.output().match(/: 3\/3 cells completed \((\d+) found finished\), 0 failed/);
  assert.ok(summary, again.output());
  assert.ok(Number(summary[1]) >= doneBefore, `the ${doneBefore} cells finished before Ctrl-C were reused, not redone:\n${again.output()}`);
  await workersGone(again.pid!, listedWorkers(again.output()), 'the finished command');
});

test('SIGKILL of ntml sweep start: its training worker processes exit on their own within the bound', { timeout: 600_000 }, async () => {
  const dir = path.join(tmp, 'kill');
  await fsp.mkdir(dir, { recursive: true });
  const specFile = path.join(dir, 'sweep.json');
  await fsp.writeFile(specFile, JSON.stringify(spec(`killed-${Date.now().toString(36)}`)));
  const cli = start([NTML, 'sweep', 'start', '--spec', specFile, '--stack-dir', path.join(dir, 'stack'), '--training-processes', '2'], embeddedEnv(), dir);
  // a cell in a training stage: its worker is busy, the case where a drain cannot finish without Temporal
  await waitFor(() => cli.exitCode !== null || /(standardTraining|ntTraining|mutualLearning) +(\d+ epochs?|epoch \d)/.test(cli.output()), 600_000, () => `a cell in training:\n${cli.output()}`);
  assert.equal(cli.exitCode, null, cli.output());
  const workers = listedWorkers(cli.output());
  assert.ok(workers.every(isRunning), cli.output());
  cli.kill('SIGKILL');
  await cli.exited;
  const goneMs = await workersGone(cli.pid!, workers, 'the SIGKILLed command');
  const log = await fsp.readFile(path.join(dir, 'stack', 'workers.log'), 'utf8');
  console.log(`SIGKILL of the command: its training workers were gone after ${goneMs} ms; parent watch fired in ${(log.match(/is gone, stopping/g) ?? []).length} of 2`);
});

test('a training worker whose NTML_PARENT_PID process dies stops on its own, without a watchdog around it; a bad value is refused by name', { timeout: 300_000 }, async () => {
  assert.equal(parentPidFromEnv({}), undefined);
  assert.equal(parentPidFromEnv({ NTML_PARENT_PID: ' 4242 ' }), 4242);
  for (const bad of ['abc', '1', '-3', '12.5']) assert.throws(() => parentPidFromEnv({ NTML_PARENT_PID: bad }), new RegExp(`NTML_PARENT_PID .*"${bad.replace('.', '\\.')}"`));

  // a stand-in parent this test can kill; the worker is this process's child, not the stand-in's
  const parent = spawn('sleep', ['600'], { stdio: 'ignore' });
  const worker = spawnTrainingWorker(taskQueues('parent-watch').training, { NTML_PARENT_PID: String(parent.pid), NTML_SHUTDOWN_GRACE_SECONDS: '3' });
  try {
    await waitFor(() => /ntml training worker: backend/.test(worker.output()) || worker.exitCode !== null, 120_000, () => `the worker to poll:\n${worker.output()}`);
    assert.equal(worker.exitCode, null, worker.output());
    await sleep(2_000);
    assert.equal(worker.exitCode, null, `the worker stays while its parent lives:\n${worker.output()}`);
    const t0 = Date.now();
    parent.kill('SIGKILL');
    await Promise.race([waitForExit(worker), sleep(WORKER_EXIT_BOUND_MS)]);
    const ms = Date.now() - t0;
    assert.ok(worker.exitCode !== null || worker.signalCode !== null, `still running ${ms} ms after its parent died:\n${worker.output()}`);
    assert.match(worker.output(), new RegExp(`the process that started it \\(pid ${parent.pid}, NTML_PARENT_PID\\) is gone, stopping`));
    console.log(`parent SIGKILLed: the idle worker exited (code ${worker.exitCode}) after ${ms} ms`);

    const refused = spawnTrainingWorker(taskQueues('parent-watch').training, { NTML_PARENT_PID: 'abc' });
    await waitForExit(refused);
    assert.equal(refused.exitCode, 1);
    assert.match(refused.output(), /NTML_PARENT_PID must be the pid of the process that started this worker .*"abc"/);
  } finally {
    if (parent.exitCode === null && parent.signalCode === null) parent.kill('SIGKILL');
    if (worker.exitCode === null && worker.signalCode === null) worker.kill('SIGKILL');
    await waitForExit(worker);
  }
});
