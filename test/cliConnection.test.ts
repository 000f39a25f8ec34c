/**
 * One way to connect (cli/connection.ts), through bin/ntml on the real test stack:
 *   remote  ($NTML_TEMPORAL_ADDRESS) with custom queues that no worker polls: sweep start and
 *           purify start on the environment's queues and say within seconds that nobody polls
 *           them; sweep status answers at once instead of a query deadline; the first Ctrl-C
 *           stops a waiting sweep or audit run (exit 130).
 *   local   a stack left running by `ntml stack start` (in a scratch directory, no address in
 *           the environment): sweep start and purify attach run workers of their own and
 *           finish; stack start and status print the Web UI URL.
 *   embedded neither: sweep start brings up the stack and workers for the command only.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Client } from '@temporalio/client';
import { testClient } from './support/temporal';
import { NTML_BIN, repoRoot, runNtml, sleep, spawnNode, waitFor, type CommandRun } from './support/processes';


const ntml = (args: string[], opts: { env: NodeJS.ProcessEnv; cwd?: string; timeout?: number }): Promise<CommandRun> => runNtml(args, opts);

/** A one-cell sweep at the smallest budget: the connection is under test, not the defense. */
function writeSpec(dir: string, name: string): string {
  const file = path.join(dir, `${name}.yaml`);
  writeFileSync(
    file,
    [
      `name: ${name}`,
      'concurrency: 1',
      'base:',
      '  mode: evaluation',
      '  tier: ci',
      '  data: { format: synthetic, trainSize: 200, testSize: 100 }',
      '  cleanBudget: 50',
      '  training: { epochs: 1 }',
      'grid:',
      '  attack: [{ name: badnets }]',
      '  defense: [{ name: none }]',
      '  seed: [1]',
      '',
    ].join('\n'),
  );
  return file;
}

/** Starts `ntml ARGS`, waits for `pattern` in its output, sends one SIGINT; the exit code and output. */
async function interruptAfter(args: string[], env: NodeJS.ProcessEnv, pattern: RegExp): Promise<{ code: number | string | null; stderr: string }> {
  const child = spawnNode([NTML_BIN, ...args], env, repoRoot);
  try {
    await waitFor(() => pattern.test(child.output()), 30_000, () => `${pattern}:\n${child.output()}`);
    child.kill('SIGINT');
    const code = await Promise.race([child.exited, sleep(10_000).then(() => 'still running 10 s after Ctrl-C')]);
    return { code, stderr: child.output() };
  } finally {
    child.kill('SIGKILL');
  }
}

/** A purify run small enough to finish in seconds: no defense, one epoch. */
function writeTinyConfig(dir: string): string {
  const file = path.join(dir, 'tiny.yaml');
  writeFileSync(
    file,
    'mode: evaluation\ntier: ci\ndata: { format: synthetic, trainSize: 200, testSize: 100 }\ncleanBudget: 50\ntraining: { epochs: 1 }\nattack: { name: badnets }\ndefense: { name: none }\n',
  );
  return file;
}

let dir: string;
let client: Client;
let close: () => Promise<void>;
before(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'ntml-connection-'));
  ({ client, close } = await testClient());
});
after(async () => {
  await close();
  rmSync(dir, { recursive: true, force: true });
});

describe('remote server, custom queues, no worker', () => {
  const id = `${process.pid}-${Date.now().toString(36)}`;
  const queues = { orchestration: `cli-orch-${id}`, training: `cli-train-${id}` };
  const env = { ...process.env, NTML_ORCHESTRATION_TASK_QUEUE: queues.orchestration, NTML_TRAINING_TASK_QUEUE: queues.training };
  const name = `cli-queues-${id}`;
  let spec: string;
  before(() => {
    spec = writeSpec(dir, name);
  });
  after(async () => {
    await client.workflow.getHandle(`sweep-${name}`).terminate('test over').catch(() => undefined);
  });

  it('sweep start uses the queues of the environment and says within seconds that no worker polls them', async () => {
    const r = await ntml(['sweep', 'start', '--spec', spec, '--detach'], { env });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), `sweep-${name}`);
    assert.match(r.stderr, new RegExp(`no worker polls the orchestration queue ${queues.orchestration} and training queue ${queues.training}`));
    assert.ok(r.seconds < 20, `took ${r.seconds} s`);

    const handle = client.workflow.getHandle(`sweep-${name}`);
    assert.equal((await handle.describe()).taskQueue, queues.orchestration);
    const started = (await handle.fetchHistory()).events?.[0]?.workflowExecutionStartedEventAttributes;
    const input = JSON.parse(Buffer.from(started!.input!.payloads![0].data!).toString('utf8')) as { options?: { trainingTaskQueue?: string } };
    assert.equal(input.options?.trainingTaskQueue, queues.training, 'the cells train on the environment\'s training queue');
  });

  it('sweep status says nobody polls instead of waiting for a query deadline', async () => {
    const r = await ntml(['sweep', 'status', name], { env });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`sweep ${name}: running, but no worker polls its queue ${queues.orchestration}`));
    assert.doesNotMatch(r.stdout + r.stderr, /DEADLINE_EXCEEDED/);
    assert.ok(r.seconds < 15, `took ${r.seconds} s`);
    const missing = await ntml(['sweep', 'status', `${name}-nosuch`], { env });
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /no sweep .*-nosuch on 127\.0\.0\.1:\d+/);
    const cancelMissing = await ntml(['sweep', 'cancel', `${name}-nosuch`], { env });
    assert.equal(cancelMissing.code, 1);
    assert.match(cancelMissing.stderr, /^ntml: no sweep .*-nosuch on 127\.0\.0\.1:\d+ \(namespace/);
  });

  it('the first Ctrl-C stops a sweep that waits for workers (exit 130; the sweep goes on)', async () => {
    const t0 = Date.now();
    const r = await interruptAfter(['sweep', 'start', '--spec', spec], env, /no worker polls/);
    assert.equal(r.code, 130, r.stderr);
    assert.ok(Date.now() - t0 < 40_000);
    assert.match(r.stderr, /stopped watching; it goes on/);
    assert.equal((await client.workflow.getHandle(`sweep-${name}`).describe()).status.name, 'RUNNING');
  });

  it('audit run waits on the same queues, warns within seconds, and stops on the first Ctrl-C', async () => {
    const request = path.join(dir, 'audit.json');
    writeFileSync(
      request,
      JSON.stringify({
        modelId: `cli-queues-${id}`,
        model: { layersModel: path.join(dir, 'model', 'model.json') },
        referenceSet: { format: 'ntml', location: path.join(dir, 'reference.ntds') },
        policy: { neuralCleanse: { enabled: false } },
      }),
    );
    const auditId = `cli-queues-audit-${id}`;
    const child = spawnNode([NTML_BIN, 'audit', 'run', '--request', request, '--id', auditId], env, repoRoot);
    try {
      await waitFor(() => /no worker polls/.test(child.output()), 30_000, () => `the no-worker warning:\n${child.output()}`);
      const stderr = child.output();
      assert.match(stderr, new RegExp(`no worker polls the orchestration queue ${queues.orchestration}`));
      assert.equal((await client.workflow.getHandle(auditId).describe()).taskQueue, queues.orchestration);
      child.kill('SIGINT');
      const code = await Promise.race([child.exited, sleep(10_000).then(() => 'still running')]);
      assert.equal(code, 130, child.output());
      assert.match(child.output(), /stopped watching; it goes on/);
    } finally {
      child.kill('SIGKILL');
      await client.workflow.getHandle(auditId).terminate('test over').catch(() => undefined);
    }
  });

  it('purify --detach starts on the same queues and gives the same warning', async () => {
    const runId = `cli-queues-purify-${id}`;
    const r = await ntml(['purify', '--config', path.join(repoRoot, 'examples', 'demo.yaml'), '--detach', '--id', runId], { env });
    try {
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, new RegExp(`no worker polls the orchestration queue ${queues.orchestration}`));
      assert.equal((await client.workflow.getHandle(runId).describe()).taskQueue, queues.orchestration);
      // attach on a remote server says the same and stops watching on the first Ctrl-C
      const attach = await interruptAfter(['purify', 'attach', runId], env, /no worker polls/);
      assert.equal(attach.code, 130, attach.stderr);
      assert.match(attach.stderr, new RegExp(`no worker polls the orchestration queue ${queues.orchestration}`));
      assert.match(attach.stderr, /stopped watching; run .* goes on/);
    } finally {
      await client.workflow.getHandle(runId).terminate('test over').catch(() => undefined);
    }
  });
});

describe('a local stack left running by ntml stack start', () => {
  // no address and no store in the environment: the commands find the stack in ./.ntml/stack
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const k of Object.keys(env)) if (/^NTML_(TEMPORAL_ADDRESS|STORE|S3_)/.test(k)) delete env[k];
  let cwd: string;
  before(() => {
    cwd = mkdtempSync(path.join(os.tmpdir(), 'ntml-localstack-'));
  });
  after(async () => {
    await ntml(['stack', 'stop'], { env, cwd });
    rmSync(cwd, { recursive: true, force: true });
  });

  it('stack start and status print the Web UI URL, and sweep start runs its own workers on the stack', { timeout: 300_000 }, async () => {
    const started = await ntml(['stack', 'start'], { env, cwd, timeout: 90_000 });
    assert.equal(started.code, 0, started.stderr);
    const ui = /Web UI\s+(http:\/\/127\.0\.0\.1:\d+)/.exec(started.stderr)?.[1];
    assert.ok(ui, `no Web UI URL in:\n${started.stderr}`);
    const page = await fetch(ui);
    assert.equal(page.status, 200, `${ui} answers`);
    const status = await ntml(['stack', 'status'], { env, cwd });
    assert.equal(status.code, 0, status.stdout);
    assert.ok(status.stdout.includes(`Web UI   ${ui}`), status.stdout);

    const name = `cli-local-${process.pid}`;
    const r = await ntml(['sweep', 'start', '--spec', writeSpec(cwd, name)], { env, cwd, timeout: 280_000 });
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stderr, /using the running stack in \.ntml\/stack/);
    assert.match(r.stderr, /starting an orchestration and a training worker in this process/);
    assert.doesNotMatch(r.stderr, /no worker polls/);
    assert.match(r.stderr, new RegExp(`sweep ${name}: 1/1 cells completed`));
    // the stack keeps running for the next command, and status says how the finished sweep went
    assert.equal((await ntml(['stack', 'status'], { env, cwd })).code, 0);
    const finished = await ntml(['sweep', 'status', name], { env, cwd });
    assert.equal(finished.code, 0, finished.stderr);
    assert.equal(finished.stdout, `sweep ${name}: 1/1 cells completed (0 found finished), 0 failed\nreport: ntml sweep report ${name}\n`);
  });

  it('sweep status right after a Ctrl-C stopped the sweep\'s workers says no worker polls, not a gRPC error', { timeout: 300_000 }, async () => {
    const name = `cli-stopped-${process.pid}`;
    // a seed and a length of its own: nothing cached by the other tests, time to stop it mid-cell
    const spec = writeSpec(cwd, name);
    writeFileSync(spec, readFileSync(spec, 'utf8').replace('seed: [1]', 'seed: [7]').replace('epochs: 1', 'epochs: 20'));
    const child = spawnNode([NTML_BIN, 'sweep', 'start', '--spec', spec, '--training-processes', '1'], env, cwd);
    try {
      await waitFor(() => /badnets · none .*: (standardTraining|evaluation)/.test(child.output()), 120_000, () => `a cell training:\n${child.output()}`);
      child.kill('SIGINT');
      assert.equal(await child.exited, 130, child.output());
      const status = await ntml(['sweep', 'status', name], { env, cwd });
      assert.equal(status.code, 0, status.stderr);
      // the server refuses the query for want of a poller, or lets it run out: either way, words
      assert.match(status.stdout, new RegExp(`sweep ${name}: running, but no worker (polls its queue|answered the progress query within 10 s)`));
      assert.doesNotMatch(status.stdout, /FAILED_PRECONDITION|DEADLINE_EXCEEDED/);
    } finally {
      child.kill('SIGKILL');
      await ntml(['sweep', 'cancel', name], { env, cwd });
    }
  });

  it('purify attach runs the workers a run started elsewhere on this stack is waiting for', { timeout: 300_000 }, async () => {
    const status = JSON.parse((await ntml(['stack', 'status', '--json'], { env, cwd })).stdout) as { temporal?: { address: string; ui?: string } };
    const address = status.temporal?.address;
    assert.ok(address, 'the stack of the previous test is running');
    assert.match(status.temporal?.ui ?? '', /^http:\/\/127\.0\.0\.1:\d+$/, 'status --json has the Web UI URL');
    const runId = `cli-attach-${process.pid}`;
    // started through the address: nothing runs it until someone attaches
    const started = await ntml(['purify', '--config', writeTinyConfig(cwd), '--address', address, '--detach', '--id', runId], { env, cwd });
    assert.equal(started.code, 0, started.stderr);
    const r = await ntml(['purify', 'attach', runId], { env, cwd, timeout: 280_000 });
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stderr, /using the running stack in \.ntml\/stack/);
    assert.match(r.stderr, new RegExp(`run ${runId} finished`));
    assert.match(r.stdout, /ACC/, "the report is printed");
  });
});

describe('no server and no running stack: the embedded stack', () => {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const k of Object.keys(env)) if (/^NTML_(TEMPORAL_ADDRESS|STORE|S3_)/.test(k)) delete env[k];
  let cwd: string;
  before(() => {
    cwd = mkdtempSync(path.join(os.tmpdir(), 'ntml-embedded-'));
  });
  after(() => rmSync(cwd, { recursive: true, force: true }));

  it('sweep start starts the stack and workers for the command and stops them; status then says how to get a server', { timeout: 300_000 }, async () => {
    const name = `cli-embedded-${process.pid}`;
    const r = await ntml(['sweep', 'start', '--spec', writeSpec(cwd, name)], { env, cwd, timeout: 280_000 });
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stderr, /stack up in [\d.]+ s: Temporal 127\.0\.0\.1:\d+, Web UI http:\/\/127\.0\.0\.1:\d+/);
    assert.match(r.stderr, /starting an orchestration and a training worker in this process/);
    assert.match(r.stderr, new RegExp(`sweep ${name}: 1/1 cells completed`));
    assert.doesNotMatch(r.stderr, /no worker polls/);
    // the stack went with the command: a read-only command has no server to ask
    const status = await ntml(['sweep', 'status', name], { env, cwd });
    assert.equal(status.code, 2, status.stderr);
    assert.match(status.stderr, /no Temporal server to ask[\s\S]*ntml stack start/);
  });
});
