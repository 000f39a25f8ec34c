/**
 * SIGTERM of every process of a deployment in turn, during one ci-tier purification on a
 * private stack supervised by this process: the `ntml purify` that started the run, the
 * Temporal dev server, versitygw, the training worker and the orchestration worker (both
 * processes, as deployed). The run ends with exactly the weights of an uninterrupted one.
 *
 * The CLI side: `ntml purify` stops watching at SIGTERM (exit 130, the run goes on); an
 * `ntml purify attach` started then follows the run through the real Temporal restart (the
 * supervisor brings the server back on its port), keeps printing progress, and exits 0 with
 * the report; an attach after the end shows the finished result again.
 */
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

import assert from 'node:assert/strict';
import { existsSync, promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { Client, Connection } from '@temporalio/client';
import { ciConfig, quietRuntime, referenceRun, repoRoot, taskQueues, waitForExit } from './support/temporal';
import { NTML_BIN as NTML, sleep, spawnNode, waitFor, type OutputProcess } from './support/processes';
import { startLocalStack, temporalHealthy, type LocalStack } from '../infra/stack/index';
import { storeFromEnv } from '../store/index';
import type { CheckpointEntry } from '../activities/checkpointing';
import type { PurifyOutcome, PurifyProgress } from '../workflows/contract';

quietRuntime();

const start = (args: string[], env: Record<string, string>, cwd: string): OutputProcess => spawnNode(args, { ...process.env, ...env }, cwd);

/** SIGTERM to a stack server; resolves once the supervisor has a new one on the same address. */
async function termServer(stack: LocalStack, server: 'temporal' | 's3'): Promise<number> {
  const victim = stack[server]!;
  const t0 = Date.now();
  process.kill(victim.pid, 'SIGTERM');
  await waitFor(() => stack[server]!.pid !== victim.pid, 120_000, `the supervisor to restart ${server}`, 100);
  const now = stack[server]!;
  assert.equal('address' in now ? now.address : now.endpoint, 'address' in victim ? victim.address : victim.endpoint, `${server} back on its port`);
  return Date.now() - t0;
}

test('SIGTERM of the CLI, Temporal, versitygw, the training and the orchestration worker in turn: the run ends with the uninterrupted weights, attach follows it to the end', { timeout: 900_000 }, async () => {
  const reference = await referenceRun(); // on the shared test stack, before this file switches to its own
  const tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'ntml-faults-sigterm-'));
  const stack = await startLocalStack({ dir: path.join(tmp, 'stack'), log: (m) => console.log(`[private stack] ${m}`) });
  const queues = taskQueues('faults-sigterm');
  const env: Record<string, string> = {
    ...(stack.env as Record<string, string>),
    NTML_ORCHESTRATION_TASK_QUEUE: queues.orchestration,
    NTML_TRAINING_TASK_QUEUE: queues.training,
    NTML_SHUTDOWN_GRACE_SECONDS: '30',
    NTML_OUTAGE_MAX_BACKOFF_SECONDS: '2',
  };
  for (const [k, v] of Object.entries(env)) process.env[k] = v; // this file runs in its own process
  const address = env.NTML_TEMPORAL_ADDRESS;
  const store = storeFromEnv();
  const configFile = path.join(tmp, 'run.json');
  await fsp.writeFile(configFile, JSON.stringify(ciConfig()));
  const runId = `faults-sigterm-${Date.now()}`;
  const worker = (kind: 'training' | 'orchestration') => start([path.join(repoRoot, 'dist', 'workers', `${kind}.js`)], env, tmp);
  let training = worker('training');
  let orchestration = worker('orchestration');
  const procs: OutputProcess[] = [training, orchestration];
  const connection = await Connection.connect({ address });
  const client = new Client({ connection });
  try {
    // 1. the CLI that started the run: SIGTERM stops watching, the run goes on
    const cli = start([NTML, 'purify', '--config', configFile, '--id', runId, '--address', address, '--out', path.join(tmp, 'first')], env, tmp);
    procs.push(cli);
    await waitFor(() => /\]\s+\w+/.test(cli.output()) || cli.exitCode !== null, 120_000, () => `a progress line from ntml purify:\n${cli.output()}`, 100);
    cli.kill('SIGTERM');
    assert.equal(await cli.exited, 130, cli.output());
    assert.match(cli.output(), new RegExp(`stopped watching; run ${runId} goes on`));
    const handle = client.workflow.getHandle(runId);
    assert.equal((await handle.describe()).status.name, 'RUNNING');

    const attach = start([NTML, 'purify', 'attach', runId, '--address', address, '--out', path.join(tmp, 'attached')], env, tmp);
    procs.push(attach);
    await waitFor(() => attach.output().includes(`attached to run ${runId}`), 60_000, () => `ntml purify attach:\n${attach.output()}`, 100);

    // 2. Temporal, once standard training has stored a checkpoint
    // the CLI's run caches its stages, so standard training files its checkpoints under its stage key
    // (checkpoints/stage/<key>/standard); this private store holds no other run's
    const standardEpochs = async (): Promise<number[]> => {
      const key = (await store.listRecords('checkpoints/')).find((k) => /standard$/.test(k));
      return key ? ((await store.getRecord<CheckpointEntry[]>(key)) ?? []).map((e) => e.epoch) : [];
    };
    await waitFor(async () => (await standardEpochs()).length >= 1, 300_000, 'a standard-training checkpoint', 100);
    const attachBefore = attach.output().length;
    const temporalMs = await termServer(stack, 'temporal');
    assert.equal(await temporalHealthy(address), true);

    // 3. versitygw
    const s3Ms = await termServer(stack, 's3');

    // 4. the training worker, in mutual learning (the longest stage: it cannot end before the
    // signal lands): it drains (checkpoints the running epoch, hands the stage over) and exits 0
    let stage = '';
    await waitFor(async () => {
      stage = (await handle.query<PurifyProgress>('progress').catch(() => undefined))?.stage ?? '';
      return stage === 'mutualLearning';
    }, 300_000, 'mutual learning', 100);
    await sleep(2_000);
    const termedAt = Date.now();
    training.kill('SIGTERM');
    const trainingCode = await training.exited;
    const drainSeconds = (Date.now() - termedAt) / 1000;
    assert.equal(trainingCode, 0, training.output());
    assert.match(training.output(), /SIGTERM, stopping after the running epochs are checkpointed/);
    training = worker('training');
    procs.push(training);

    // 5. the orchestration worker: the SDK shuts it down gracefully; workflow tasks wait for the next one
    orchestration.kill('SIGTERM');
    assert.equal(await orchestration.exited, 0, orchestration.output());
    const runningAtLastKill = (await handle.describe()).status.name;
    orchestration = worker('orchestration');
    procs.push(orchestration);
    console.log(
      `SIGTERM: CLI (130), Temporal (back in ${temporalMs} ms), versitygw (back in ${s3Ms} ms), training worker in ${stage} (exit 0 after ${drainSeconds.toFixed(1)} s), ` +
        `orchestration worker (exit 0); the run was ${runningAtLastKill} after the last`,
    );
    assert.equal(runningAtLastKill, 'RUNNING', 'every process was stopped while the run was in progress');

    // the attached CLI followed the run through all of it
    assert.equal(await attach.exited, 0, attach.output());
    const followed = attach.output().slice(attachBefore);
    const progressLines = followed.split('\n').filter((l) => /^\[\s*[\d:]+\] \S/.test(l));
    assert.ok(progressLines.length >= 2, `progress went on after the Temporal restart:\n${followed}`);
    assert.match(followed, new RegExp(`run ${runId} finished`));
    assert.ok(existsSync(path.join(tmp, 'attached', 'report.md')) && existsSync(path.join(tmp, 'attached', 'model', 'weights.bin')), attach.output());

    const result = (await handle.result()) as PurifyOutcome;
    assert.equal(result.purifiedModel.sha256, reference.outcome.purifiedModel.sha256, 'the same weights as the uninterrupted run');
    const history = await handle.fetchHistory();
    // a retried attempt's start carries the previous attempt's failure (failed attempts that were retried are not events of their own)
    const drained = (history.events ?? []).filter((e) => e.activityTaskStartedEventAttributes?.lastFailure?.applicationFailureInfo?.type === 'WorkerDraining');
    assert.ok(drained.length >= 1, 'the stopping training worker handed its stage over (WorkerDraining)');

    // 6. the CLI stopped by SIGTERM: attaching again shows the finished result
    const again = start([NTML, 'purify', 'attach', runId, '--address', address, '--out', path.join(tmp, 'again')], env, tmp);
    procs.push(again);
    assert.equal(await again.exited, 0, again.output());
    assert.match(again.output(), /COMPLETED/);
    assert.match(again.output(), new RegExp(`run ${runId} finished`));
    assert.equal(
      await fsp.readFile(path.join(tmp, 'again', 'report.md'), 'utf8'),
      await fsp.readFile(path.join(tmp, 'attached', 'report.md'), 'utf8'),
      'the same report',
    );
  } finally {
    for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    await Promise.all(procs.map((p) => waitForExit(p)));
    await connection.close();
    await stack.stop();
    await fsp.rm(tmp, { recursive: true, force: true });
  }
});
