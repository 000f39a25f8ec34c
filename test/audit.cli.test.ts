/**
 * `ntml audit ...` as a child process against the test run's Temporal server and S3 store:
 * help and request validation before any server is contacted, the schedule subcommands
 * (cron shown as given, notes kept across pause/unpause, no next times while paused, a
 * backfill that runs every slot and says so, recent audits with their verdicts), `audit run`
 * with workers of this process (exit code by verdict, report files written), a first audit
 * from nothing (`audit reference-set`, `audit digest`, a pinned model with one flipped byte:
 * exit code 5), `audit history` from the store, and `stack env` for a running stack.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import type { Client } from '@temporalio/client';
import { inProcessWorkers, quietRuntime, taskQueues, testClient } from './support/temporal';
import { auditRequest, tempDir, writeReferenceSet } from './support/auditHarness';
import { backdooredModelBytes, cleanModel } from './support/auditFixtures';
import { exportLayersModel } from '../core/models/layersFormat';
import { storeFromEnv } from '../store';
import { historyKey, readHistory } from '../core/audit/history';
import type { AuditHistoryRecord } from '../core/audit/report';
import { NTML_BIN, repoRoot, runNtml, type CommandRun } from './support/processes';

quietRuntime();

const ntml = (args: string[], env: NodeJS.ProcessEnv = process.env, timeout = 60_000): Promise<CommandRun> => runNtml(args, { env, timeout });

let client: Client;
let close: () => Promise<void>;
let dir: string;
let requestFile: string;
const modelId = `cli-${Date.now().toString(36)}`;
before(async () => {
  ({ client, close } = await testClient());
  dir = await tempDir('audit-cli');
  const model = await storeFromEnv().put(await backdooredModelBytes());
  requestFile = path.join(dir, 'audit.json');
  const request = auditRequest({
    modelId,
    model: { artifact: model },
    referenceSet: { format: 'ntml', location: await writeReferenceSet(dir) },
    policy: { neuralCleanse: { enabled: false } },
  });
  await fs.writeFile(requestFile, JSON.stringify(request));
});
after(async () => {
  await close();
  await fs.rm(dir, { recursive: true, force: true });
});

describe('ntml audit: command line', () => {
  it('lists the audit commands in the help texts', async () => {
    const main = await ntml(['--help']);
    assert.match(main.stdout, /ntml audit run\|schedule\|history/);
    const audit = await ntml(['audit', '--help']);
    assert.equal(audit.code, 0);
    for (const c of ['run', 'schedule create', 'schedule list', 'schedule describe', 'schedule pause', 'schedule unpause', 'schedule trigger', 'schedule backfill', 'schedule delete', 'history']) {
      assert.match(audit.stdout, new RegExp(`ntml audit ${c}`), `"${c}" missing`);
    }
    const create = await ntml(['audit', 'schedule', 'create', '--help']);
    for (const o of ['--request', '--every', '--cron', '--catchup-window', '--overlap', '--paused']) assert.ok(create.stdout.includes(o), o);
  });

  it('rejects bad requests and options before contacting a server, with exit code 2', async () => {
    const bad = path.join(dir, 'bad.yaml');
    await fs.writeFile(bad, 'modelId: shop\nmodel: { layersModel: s3://models/shop/model.onnx }\nreferenceSet: { format: ntml, location: r.ntds }\n');
    const env = { ...process.env, NTML_TEMPORAL_ADDRESS: '127.0.0.1:1' };
    const r = await ntml(['audit', 'run', '--request', bad], env);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /model\.layersModel: s3:\/\/models\/shop\/model\.onnx looks like ONNX/);
    const cases: Array<[string[], RegExp]> = [
      [['audit', 'schedule', 'create', '--request', requestFile], /give exactly one of --every DURATION or --cron EXPR/],
      [['audit', 'schedule', 'create', '--request', requestFile, '--every', 'daily'], /--every must be a duration such as 90s/],
      [['audit', 'schedule', 'create', '--request', requestFile, '--every', '1h', '--overlap', 'queue'], /--overlap must be one of skip, buffer-one/],
      [['audit', 'schedule', 'backfill', 'x', '--start', '2025-01-02T00:00:00Z', '--end', '2025-01-01T00:00:00Z'], /--end must be after --start/],
      [['audit', 'schedule', 'explode'], /unknown audit schedule subcommand "explode"/],
      [['audit'], /missing audit subcommand \(run, schedule, history, digest or reference-set\)/],
      [['audit', 'reference-set', '--data', 'imagenet', '--out', 'x.ntds'], /--data must be synthetic or cifar10, got "imagenet"/],
      [['audit', 'reference-set', '--data', 'synthetic'], /missing --out FILE/],
      [['audit', 'schedule', 'create', '--request', requestFile, '--cron', '3am'], /--cron needs 5 fields/],
      [['audit', 'history', '../x'], /is not a model id/],
    ];
    for (const [args, expected] of cases) {
      const out = await ntml(args, env);
      assert.equal(out.code, 2, `${args.join(' ')}: ${out.stderr}`);
      assert.match(out.stderr, expected);
    }
  });

  it('audit run and the schedule commands ask the namespace --namespace names', async () => {
    for (const command of [['run', '--request', requestFile], ['schedule', 'list']]) {
      const r = await ntml(['audit', ...command, '--namespace', 'ntml-no-such-namespace']);
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /Namespace not found: 'ntml-no-such-namespace'/);
    }
  });

  it('creates, lists, describes, pauses, unpauses, triggers, backfills and deletes a schedule', async () => {
    const id = `cli-schedule-${Date.now().toString(36)}`;
    // the schedule's audits go to a queue no worker serves: only the schedule is under test
    const env = { ...process.env, NTML_ORCHESTRATION_TASK_QUEUE: `nobody-${id}` };
    const created = await ntml(['audit', 'schedule', 'create', '--request', requestFile, '--every', '1h', '--id', id, '--paused', '--catchup-window', '10m', '--note', 'owned by ml-ops'], env);
    assert.equal(created.code, 0, created.stderr);
    assert.equal(created.stdout.trim(), id);
    assert.match(created.stderr, /every 1 h, overlap SKIP, catch-up window 10 min, paused/);
    try {
      const listed = await ntml(['audit', 'schedule', 'list'], env);
      assert.match(listed.stdout, new RegExp(`${id}  paused`));
      let d = await ntml(['audit', 'schedule', 'describe', id], env);
      assert.match(d.stdout, /PAUSED  \(owned by ml-ops\)/);
      assert.match(d.stdout, /when +every 1 h/);
      // paused: no audit starts, so no next times are listed
      assert.match(d.stdout, /next +- \(paused: no audit starts until unpause; trigger still works\)/);
      assert.doesNotMatch(d.stdout, /next +\d{4}-/);
      assert.match((await ntml(['audit', 'schedule', 'list'], env)).stdout, new RegExp(`${id}  paused  next -  last -`));
      assert.match(d.stdout, /policies +overlap SKIP, catch-up window 10 min/);
      assert.equal((await ntml(['audit', 'schedule', 'unpause', id], env)).code, 0);
      d = await ntml(['audit', 'schedule', 'describe', id], env);
      assert.doesNotMatch(d.stdout, /PAUSED/);
      assert.match(d.stdout, /next +\d{4}-\d\d-\d\dT/);
      assert.equal((await ntml(['audit', 'schedule', 'pause', id, '--note', 'maintenance window'], env)).code, 0);
      d = await ntml(['audit', 'schedule', 'describe', id], env);
      assert.match(d.stdout, /PAUSED  \(maintenance window\)/);
      assert.equal((await ntml(['audit', 'schedule', 'trigger', id], env)).code, 0);
      // a range from one slot to the next (every 1h: on the hour): the backfill runs both ends,
      // and the count it prints says so
      const hour = Math.floor(Date.now() / 3600_000) * 3600_000;
      const start = new Date(hour - 3 * 3600_000).toISOString();
      const end = new Date(hour - 2 * 3600_000).toISOString();
      const backfill = await ntml(['audit', 'schedule', 'backfill', id, '--start', start, '--end', end, '--overlap', 'allow-all'], env);
      assert.equal(backfill.code, 0, backfill.stderr);
      assert.equal(backfill.stdout.trim(), '2');
      assert.match(backfill.stderr, /2 audits due; all 2 start at once \(overlap ALLOW_ALL\)/);
      // one triggered audit and the two slots of the range
      const describeJson = async () => JSON.parse((await ntml(['audit', 'schedule', 'describe', id, '--json'], env)).stdout);
      let info: { numActionsTaken: number } = (await describeJson()).info;
      for (let i = 0; i < 40 && info.numActionsTaken < 3; i++) {
        await new Promise((r) => setTimeout(r, 250));
        info = (await describeJson()).info;
      }
      assert.equal(info.numActionsTaken, 3);
      // unpausing without --note gives back the note the schedule was created with
      assert.equal((await ntml(['audit', 'schedule', 'unpause', id], env)).code, 0);
      assert.match((await ntml(['audit', 'schedule', 'describe', id], env)).stdout, /^schedule +cli-schedule-\w+  \(owned by ml-ops\)$/m);
      assert.equal((await ntml(['audit', 'schedule', 'pause', id], env)).code, 0);

      // a cron schedule is described by its expression, not as "1 calendar entry"
      const cronId = `${id}-cron`;
      assert.equal((await ntml(['audit', 'schedule', 'create', '--request', requestFile, '--cron', '0 3 * * *', '--id', cronId, '--paused'], env)).code, 0);
      const cron = await ntml(['audit', 'schedule', 'describe', cronId], env);
      // created without a note, unpaused without one (the README's quick start): it runs again
      assert.equal((await ntml(['audit', 'schedule', 'unpause', cronId], env)).code, 0);
      const unpaused = await ntml(['audit', 'schedule', 'describe', cronId], env);
      assert.equal((await ntml(['audit', 'schedule', 'delete', cronId], env)).code, 0);
      assert.match(cron.stdout, /^when +cron "0 3 \* \* \*"$/m);
      assert.doesNotMatch(unpaused.stdout, /PAUSED/);
      assert.match(unpaused.stdout, /^next +\d{4}-\d\d-\d\dT03:00/m);
    } finally {
      const deleted = await ntml(['audit', 'schedule', 'delete', id], env);
      assert.equal(deleted.code, 0, deleted.stderr);
      for await (const wf of client.workflow.list({ query: `TaskQueue = "nobody-${id}"` })) {
        await client.workflow.getHandle(wf.workflowId, wf.runId).terminate('test cleanup').catch(() => undefined);
      }
    }
    const gone = await ntml(['audit', 'schedule', 'describe', id], env);
    assert.equal(gone.code, 1);
    assert.match(gone.stderr, new RegExp(`no schedule ${id} on this server`));
  });

  it('runs an audit with the verdict as its exit code (3: suspicious) and writes the report files', { timeout: 300_000 }, async () => {
    const queues = taskQueues('audit-cli');
    const workers = await inProcessWorkers(queues);
    const out = path.join(dir, 'out');
    const env = { ...process.env, NTML_ORCHESTRATION_TASK_QUEUE: queues.orchestration, NTML_TRAINING_TASK_QUEUE: queues.training };
    const r = await workers.run(() => ntml(['audit', 'run', '--request', requestFile, '--out', out, '--id', `audit-${modelId}-cli`], env, 240_000));
    // the scan is disabled in this request: the BadNets probe alone makes the backdoored model suspicious
    assert.equal(r.code, 3, r.stderr);
    assert.match(r.stdout, /^# Audit of cli-\w+: SUSPICIOUS/);
    assert.match(r.stderr, /verdict: suspicious/);
    const report = JSON.parse(await fs.readFile(path.join(out, 'report.json'), 'utf8'));
    assert.equal(report.verdict.verdict, 'suspicious');
    assert.equal(report.auditId, `audit-${modelId}-cli`);
    assert.match(await fs.readFile(path.join(out, 'report.md'), 'utf8'), /## Known-trigger probes/);
  });

  it('lists the history of a model, oldest first, with changed digests and failures', async () => {
    const store = storeFromEnv();
    const id = `history-${Date.now().toString(36)}`;
    const records: AuditHistoryRecord[] = [
      { auditId: 'a1', modelId: id, startedAt: '2025-01-01T03:00:00.000Z', finishedAt: '2025-01-01T03:01:00.000Z', status: 'completed', verdict: 'clean', reasons: ['no known trigger'], digest: 'a'.repeat(64), integrity: 'first', accuracy: 97.5 },
      { auditId: 'a2', modelId: id, startedAt: '2025-01-02T03:00:00.000Z', finishedAt: '2025-01-02T03:01:00.000Z', status: 'failed', error: 'audit of x failed: the model artifact is missing' },
      { auditId: 'a3', modelId: id, startedAt: '2025-01-03T03:00:00.000Z', finishedAt: '2025-01-03T03:01:00.000Z', status: 'completed', verdict: 'backdoored', reasons: ['known trigger towards class 0'], digest: 'b'.repeat(64), integrity: 'changed', accuracy: 96 },
    ];
    // written out of order: the listing sorts by start time
    for (const rec of [records[2], records[0], records[1]]) await store.putRecord(historyKey(id, rec.startedAt, rec.auditId), rec);
    const r = await ntml(['audit', 'history', id]);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trim().split('\n');
    assert.equal(lines.length, 4);
    assert.match(lines[1], /^2025-01-01T03:00:00Z +clean +aaaaaaaaaaaa +97\.5 +a1 +no known trigger$/);
    assert.match(lines[2], /^2025-01-02T03:00:00Z +FAILED +- +- +a2 +failed: audit of x failed: the model artifact is missing$/);
    assert.match(lines[3], /^2025-01-03T03:00:00Z +backdoored +bbbbbbbbbbbb CHANGED +96\.0 +a3 +known trigger towards class 0$/);
    const json = JSON.parse((await ntml(['audit', 'history', id, '--json', '--limit', '1'])).stdout);
    assert.deepEqual(json.map((x: AuditHistoryRecord) => x.auditId), ['a3']);
    const none = await ntml(['audit', 'history', `${id}-none`]);
    assert.equal(none.code, 0);
    assert.match(none.stderr, /no recorded audits/);
  });
  it('backfills every requested slot by default and says how many, with the verdicts in describe', { timeout: 300_000 }, async () => {
    const id = `cli-backfill-${Date.now().toString(36)}`;
    const queues = taskQueues('audit-backfill');
    const env = { ...process.env, NTML_ORCHESTRATION_TASK_QUEUE: queues.orchestration, NTML_TRAINING_TASK_QUEUE: queues.training };
    const backfillModel = `${id}-model`;
    const file = path.join(dir, `${id}.json`);
    await fs.writeFile(file, JSON.stringify({ ...JSON.parse(await fs.readFile(requestFile, 'utf8')), modelId: backfillModel }));
    assert.equal((await ntml(['audit', 'schedule', 'create', '--request', file, '--every', '1h', '--id', id, '--paused'], env)).code, 0);
    const workers = await inProcessWorkers(queues);
    try {
      // four whole hours in the range, away from its ends
      const hour = Math.floor(Date.now() / 3600_000) * 3600_000;
      const start = new Date(hour - 4.5 * 3600_000).toISOString();
      const end = new Date(hour - 0.5 * 3600_000).toISOString();
      const { backfill, describe, list } = await workers.run(async () => {
        // no --overlap: the schedule's own policy is SKIP, which would run 1 of the 4
        const backfill = await ntml(['audit', 'schedule', 'backfill', id, '--start', start, '--end', end], env);
        const deadline = Date.now() + 240_000;
        while ((await readHistory(storeFromEnv(), backfillModel)).length < 4 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 500));
        let describe = await ntml(['audit', 'schedule', 'describe', id], env);
        for (let i = 0; i < 40 && !/4 started.*0 running/.test(describe.stdout); i++) {
          await new Promise((r) => setTimeout(r, 250));
          describe = await ntml(['audit', 'schedule', 'describe', id], env);
        }
        return { backfill, describe, list: await ntml(['audit', 'schedule', 'list'], env) };
      });
      assert.equal(backfill.code, 0, backfill.stderr);
      assert.equal(backfill.stdout.trim(), '4');
      assert.match(backfill.stderr, /4 audits due; all 4 run, one after another \(overlap BUFFER_ALL\)/);
      const history = await readHistory(storeFromEnv(), backfillModel);
      assert.equal(history.length, 4, 'every slot ran');
      assert.match(describe.stdout, /audits +4 started, 0 skipped \(overlap\), 0 running/);
      // the recent list names each audit's verdict (the model is the backdoored one, scan disabled: suspicious)
      const recent = describe.stdout.split('\n').filter((l) => l.includes(`audit-${backfillModel}`));
      assert.equal(recent.length, 4, describe.stdout);
      for (const line of recent) assert.match(line, /^  \S+Z  suspicious +audit-/);
      assert.match(list.stdout, new RegExp(`^${id}  paused  next -  last \\S+Z suspicious$`, 'm'));
    } finally {
      await ntml(['audit', 'schedule', 'delete', id], env);
    }
  });

  it('takes a new user from a reference set and a pinned digest to exit code 5 for one flipped byte', { timeout: 300_000 }, async () => {
    const reference = path.join(dir, 'first', 'reference.ntds');
    const made = await ntml(['audit', 'reference-set', '--data', 'synthetic', '--size', '200', '--out', reference]);
    assert.equal(made.code, 0, made.stderr);
    assert.match(made.stderr, /wrote \S+reference\.ntds: 200 images of synthetic:reference:seed=0, 32x32x3, 10 classes \(20-20 per class\)/);
    const folder = path.join(dir, 'first', 'model');
    const c = await cleanModel();
    await exportLayersModel(c, folder);
    c.model.dispose();
    const firstId = `first-${Date.now().toString(36)}`;
    const request = auditRequest({
      modelId: firstId,
      model: { layersModel: path.join(folder, 'model.json') },
      referenceSet: { format: 'ntml', location: reference },
      policy: { neuralCleanse: { enabled: false } },
    });
    const unpinned = path.join(dir, 'first', 'audit.json');
    await fs.writeFile(unpinned, JSON.stringify(request));
    const digest = await ntml(['audit', 'digest', '--request', unpinned]);
    assert.equal(digest.code, 0, digest.stderr);
    assert.match(digest.stdout, /^[0-9a-f]{64}\n$/);
    const pinned = path.join(dir, 'first', 'pinned.json');
    await fs.writeFile(pinned, JSON.stringify({ ...request, policy: { ...request.policy, integrity: { expectedDigest: digest.stdout.trim() } } }));

    const queues = taskQueues('audit-first');
    const env = { ...process.env, NTML_ORCHESTRATION_TASK_QUEUE: queues.orchestration, NTML_TRAINING_TASK_QUEUE: queues.training };
    const workers = await inProcessWorkers(queues);
    const out = path.join(dir, 'first', 'out');
    const [approved, flipped] = await workers.run(async () => {
      const approved = await ntml(['audit', 'run', '--request', pinned, '--out', out, '--id', `audit-${firstId}-1`], env, 240_000);
      const weights = path.join(folder, 'weights.bin');
      const bytes = await fs.readFile(weights);
      bytes[100] ^= 0x80;
      await fs.writeFile(weights, bytes);
      return [approved, await ntml(['audit', 'run', '--request', pinned, '--id', `audit-${firstId}-2`, '--out', path.join(out, '2')], env, 240_000)];
    });
    // the reference set made by the command is one the audit accepts, and the clean model is accurate on it
    assert.equal(approved.code, 0, approved.stderr);
    const report = JSON.parse(await fs.readFile(path.join(out, 'report.json'), 'utf8'));
    console.log(`measured: clean model on the synthetic reference set: ${report.accuracy.current.toFixed(1)}%`);
    assert.equal(report.referenceSet.size, 200);
    assert.ok(report.accuracy.current >= 85, `accuracy ${report.accuracy.current}`);
    assert.match(report.integrity.expectedDigest, /^[0-9a-f]{64}$/);
    // one flipped byte: changed, exit code 5
    assert.equal(flipped.code, 5, flipped.stderr);
    assert.match(flipped.stdout, /^# Audit of first-\w+: CHANGED/);
    assert.match(flipped.stderr, /verdict: changed/);
    const recheck = await ntml(['audit', 'digest', '--request', pinned]);
    assert.match(recheck.stderr, /differs from policy\.integrity\.expectedDigest/);
  });

  it('prints the exports of a running stack with "stack env", and nothing for a stack that is not running', async () => {
    // the test run's own stack, found by its Temporal address
    const stacks = path.join(repoRoot, '.ntml');
    let stackDir: string | undefined;
    for (const name of await fs.readdir(stacks)) {
      const file = path.join(stacks, name, 'stack.json');
      const info = await fs.readFile(file, 'utf8').then(JSON.parse, () => undefined);
      if (info?.env?.NTML_TEMPORAL_ADDRESS === process.env.NTML_TEMPORAL_ADDRESS && !info.stoppedAt) stackDir = path.join(stacks, name);
    }
    assert.ok(stackDir, 'the test stack records itself under .ntml/');
    const r = await ntml(['stack', 'env', '--dir', stackDir]);
    assert.equal(r.code, 0, r.stderr);
    for (const key of ['NTML_TEMPORAL_ADDRESS', 'NTML_STORE', 'NTML_S3_ENDPOINT', 'NTML_S3_CREDENTIALS_FILE']) {
      assert.match(r.stdout, new RegExp(`^export ${key}='${process.env[key]!.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}'$`, 'm'));
    }
    // usable: a shell that evals them reaches the store (the history recorded by the earlier test)
    const clean: NodeJS.ProcessEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('NTML_') && !k.startsWith('AWS_')));
    const shell = await new Promise<Omit<CommandRun, 'seconds'>>((resolve) => {
      execFile('bash', ['-c', `eval "$("${process.execPath}" "${NTML_BIN}" stack env --dir "${stackDir}")" && "${process.execPath}" "${NTML_BIN}" audit history ${modelId}`], { cwd: repoRoot, env: clean, timeout: 60_000 }, (err, stdout, stderr) =>
        resolve({ code: err ? 1 : 0, stdout, stderr }),
      );
    });
    assert.equal(shell.code, 0, shell.stderr);
    assert.match(shell.stdout, new RegExp(`audit-${modelId}-cli`));
    const none = await ntml(['stack', 'env', '--dir', path.join(dir, 'no-stack')]);
    assert.equal(none.code, 1);
    assert.equal(none.stdout, '');
    assert.match(none.stderr, /no stack in \S+no-stack/);
  });
});
