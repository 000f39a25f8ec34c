/**
 * `ntml audit ...` as a child process against the test run's Temporal server and S3 store:
 * help and request validation before any server is contacted, the schedule subcommands,
 * `audit run` with workers of this process (exit code by verdict, report files written),
 * and `audit history` from the store.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import type { Client } from '@temporalio/client';
import { inProcessWorkers, quietRuntime, taskQueues, testClient } from './support/temporal';
import { auditRequest, tempDir, writeReferenceSet } from './support/auditHarness';
import { backdooredModelBytes } from './support/auditFixtures';
import { storeFromEnv } from '../store';
import { historyKey } from '../core/audit/history';
import type { AuditHistoryRecord } from '../core/audit/report';

quietRuntime();
const REPO = path.resolve(__dirname, '..', '..');
const BIN = path.join(REPO, 'bin', 'ntml');

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function ntml(args: string[], env: NodeJS.ProcessEnv = process.env, timeout = 60_000): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { cwd: REPO, env, timeout }, (err, stdout, stderr) => {
      const code = err ? ((err as { code?: number }).code ?? 1) : 0;
      resolve({ code: typeof code === 'number' ? code : 1, stdout, stderr });
    });
  });
}

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
      [['audit'], /missing audit subcommand \(run, schedule or history\)/],
      [['audit', 'history', '../x'], /is not a model id/],
    ];
    for (const [args, expected] of cases) {
      const out = await ntml(args, env);
      assert.equal(out.code, 2, `${args.join(' ')}: ${out.stderr}`);
      assert.match(out.stderr, expected);
    }
  });

  it('creates, lists, describes, pauses, unpauses, triggers, backfills and deletes a schedule', async () => {
    const id = `cli-schedule-${Date.now().toString(36)}`;
    // the schedule's audits go to a queue no worker serves: only the schedule is under test
    const env = { ...process.env, NTML_ORCHESTRATION_TASK_QUEUE: `nobody-${id}` };
    const created = await ntml(['audit', 'schedule', 'create', '--request', requestFile, '--every', '1h', '--id', id, '--paused', '--catchup-window', '10m'], env);
    assert.equal(created.code, 0, created.stderr);
    assert.equal(created.stdout.trim(), id);
    assert.match(created.stderr, /every 3600 s, overlap SKIP, catch-up window 600 s, paused/);
    try {
      const listed = await ntml(['audit', 'schedule', 'list'], env);
      assert.match(listed.stdout, new RegExp(`${id}  paused`));
      let d = await ntml(['audit', 'schedule', 'describe', id], env);
      assert.match(d.stdout, /PAUSED/);
      assert.match(d.stdout, /when +every 3600 s/);
      assert.match(d.stdout, /policies +overlap SKIP, catch-up window 600 s/);
      assert.equal((await ntml(['audit', 'schedule', 'unpause', id], env)).code, 0);
      assert.doesNotMatch((await ntml(['audit', 'schedule', 'describe', id], env)).stdout, /PAUSED/);
      assert.equal((await ntml(['audit', 'schedule', 'pause', id, '--note', 'maintenance window'], env)).code, 0);
      d = await ntml(['audit', 'schedule', 'describe', id], env);
      assert.match(d.stdout, /PAUSED  \(maintenance window\)/);
      assert.equal((await ntml(['audit', 'schedule', 'trigger', id], env)).code, 0);
      const start = new Date(Date.now() - 3 * 3600_000).toISOString();
      const end = new Date(Date.now() - 3600_000 + 1000).toISOString();
      const backfill = await ntml(['audit', 'schedule', 'backfill', id, '--start', start, '--end', end, '--overlap', 'allow-all'], env);
      assert.equal(backfill.code, 0, backfill.stderr);
      // one triggered audit and the two the past two hours should have had
      const describeJson = async () => JSON.parse((await ntml(['audit', 'schedule', 'describe', id, '--json'], env)).stdout);
      let info: { numActionsTaken: number } = (await describeJson()).info;
      for (let i = 0; i < 40 && info.numActionsTaken < 3; i++) {
        await new Promise((r) => setTimeout(r, 250));
        info = (await describeJson()).info;
      }
      assert.equal(info.numActionsTaken, 3);
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
});
