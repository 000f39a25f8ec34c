/**
 * The local stack with real servers: a Temporal dev server and versitygw started through
 * infra/stack, checked with @temporalio/client and the artifact store, then stopped; plus the
 * CLI's background mode (what CI uses) and the guarantee that servers die with their parent.
 */
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, promises as fsp, statSync } from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Connection } from '@temporalio/client';
import { storeFromEnv } from '../store/index';
import {
  groupAlive,
  isAlive,
  readStackFile,
  stackStatus,
  startLocalStack,
  startTemporalDevServer,
  type LocalStack,
} from '../infra/stack/index';
import { runNode, waitFor } from './support/processes';

const MAIN = path.join(__dirname, '..', 'infra', 'stack', 'main.js');
const quiet = () => undefined;

const runMain = (args: string[]) => runNode(MAIN, args, { timeout: 120_000 });

function parseExports(text: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const m of text.matchAll(/^export ([A-Z0-9_]+)='([^']*)'$/gm)) env[m[1]] = m[2];
  return env;
}

async function checkTemporal(address: string): Promise<void> {
  const connection = await Connection.connect({ address, connectTimeout: 10_000 });
  try {
    const ns = await connection.workflowService.describeNamespace({ namespace: 'default' });
    assert.equal(ns.namespaceInfo?.name, 'default');
    const list = await connection.workflowService.listNamespaces({});
    assert.ok(list.namespaces.some((n) => n.namespaceInfo?.name === 'default'));
  } finally {
    await connection.close();
  }
}

describe('local stack (Temporal dev server + versitygw)', () => {
  let tmp: string;
  const stacks: LocalStack[] = [];
  before(async () => {
    tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'ntml-infra-'));
  });
  after(async () => {
    await Promise.all(stacks.map((s) => s.stop()));
    await fsp.rm(tmp, { recursive: true, force: true });
  });

  it('starts both servers, serves Temporal and S3, writes stack.json without secrets, and stops cleanly', async () => {
    const dir = path.join(tmp, 'a');
    const t0 = Date.now();
    const stack = await startLocalStack({ dir, log: quiet });
    stacks.push(stack);
    const startupMs = Date.now() - t0;
    assert.ok(stack.temporal && stack.s3);
    console.log(
      `stack start-up ${startupMs} ms (temporal ${stack.temporal.startupMs} ms, versitygw ${stack.s3.startupMs} ms); temporal: ${stack.temporal.version}`,
    );

    // Temporal: a real gRPC client sees the default namespace.
    assert.match(stack.temporal.address, /^127\.0\.0\.1:\d+$/);
    await checkTemporal(stack.env.NTML_TEMPORAL_ADDRESS!);

    // S3: the env handed to workers is enough to use the store.
    assert.equal(stack.env.NTML_STORE, 's3://ntml/ntml');
    assert.match(stack.env.NTML_S3_ENDPOINT!, /^http:\/\/127\.0\.0\.1:\d+$/);
    const store = storeFromEnv({ ...stack.env });
    const data = new Uint8Array(randomBytes(10_000));
    const ref = await store.put(data);
    assert.deepEqual(Buffer.from(await store.get(ref)), Buffer.from(data));

    // stack.json: addresses and pids, never the secret; the credentials file is private.
    const info = readStackFile(dir)!;
    assert.equal(info.temporal?.pid, stack.temporal.pid);
    assert.equal(info.s3?.pid, stack.s3.pid);
    const raw = await fsp.readFile(stack.stackFile, 'utf8');
    assert.ok(!raw.includes(stack.s3.secretAccessKey), 'stack.json must not contain the S3 secret');
    assert.equal(statSync(stack.s3.credentialsFile).mode & 0o777, 0o600);

    const status = await stackStatus(dir);
    assert.equal(status.ok, true, JSON.stringify(status));

    // Ports are distinct and on loopback.
    const ports = [stack.temporal.port, stack.temporal.httpPort, stack.temporal.metricsPort, stack.s3.port];
    assert.equal(new Set(ports).size, ports.length);

    // A second stack in the same directory is refused while the first runs.
    await assert.rejects(startLocalStack({ dir, log: quiet }), /already running/);

    const pids = [stack.temporal.pid, stack.s3.pid];
    const groups = [stack.temporal.pgid, stack.s3.pgid];
    const t1 = Date.now();
    await stack.stop();
    console.log(`stack stop ${Date.now() - t1} ms`);
    for (const pid of pids) assert.equal(isAlive(pid), false, `pid ${pid} still alive`);
    for (const g of groups) assert.equal(groupAlive(g), false, `process group ${g} still alive`);
    assert.ok(readStackFile(dir)?.stoppedAt);
    assert.equal((await stackStatus(dir)).ok, false);
  });

  it('restarts on the same directory with the same credentials and data; two stacks run side by side', async () => {
    const dirA = path.join(tmp, 'a');
    const dirB = path.join(tmp, 'b');
    const [a, b] = await Promise.all([startLocalStack({ dir: dirA, log: quiet }), startLocalStack({ dir: dirB, log: quiet })]);
    stacks.push(a, b);
    const credsA = JSON.parse(await fsp.readFile(a.s3!.credentialsFile, 'utf8')) as { accessKeyId: string };
    assert.equal(a.s3!.accessKeyId, credsA.accessKeyId);
    assert.notEqual(a.s3!.accessKeyId, b.s3!.accessKeyId);
    // The object stored in the previous test is still there.
    const store = storeFromEnv({ ...a.env });
    let count = 0;
    for await (const _ of store.list()) count++;
    assert.equal(count, 1);
    await Promise.all([checkTemporal(a.temporal!.address), checkTemporal(b.temporal!.address)]);
    await Promise.all([a.stop(), b.stop()]);
  });

  it('reports a clear error with the server log when the Temporal port is taken', async () => {
    const blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const port = (blocker.address() as net.AddressInfo).port;
    try {
      await assert.rejects(
        startTemporalDevServer({ dataDir: path.join(tmp, 'clash'), port, startTimeoutMs: 20_000, log: quiet }),
        (err: Error) => {
          assert.match(err.message, new RegExp(`127\\.0\\.0\\.1:${port}`));
          assert.match(err.message, /temporal\.log/);
          assert.match(err.message, /exited with code \d+ during start-up/);
          assert.match(err.message, /address already in use/);
          return true;
        },
      );
    } finally {
      blocker.close();
    }
  });

  it('CLI: start in the background, status, stop', async () => {
    const dir = path.join(tmp, 'cli');
    const started = await runMain(['start', '--dir', dir]);
    assert.equal(started.code, 0, started.stderr);
    const env = parseExports(started.stdout);
    assert.ok(env.NTML_TEMPORAL_ADDRESS && env.NTML_S3_ENDPOINT && env.NTML_S3_CREDENTIALS_FILE, started.stdout);
    assert.equal(env.NTML_STORE, 's3://ntml/ntml');
    // The starting process has exited; the servers keep running.
    const info = readStackFile(dir)!;
    assert.equal(isAlive(info.temporal!.pid), true);
    assert.equal(isAlive(info.s3!.pid), true);
    await checkTemporal(env.NTML_TEMPORAL_ADDRESS);
    const store = storeFromEnv(env);
    await store.putRecord('ci/probe', { ok: true });
    assert.deepEqual(await store.getRecord('ci/probe'), { ok: true });

    const status = await runMain(['status', '--dir', dir]);
    assert.equal(status.code, 0, status.stdout + status.stderr);
    assert.equal((JSON.parse(status.stdout) as { ok: boolean }).ok, true);
    assert.deepEqual(parseExports((await runMain(['env', '--dir', dir])).stdout), env);

    const stopped = await runMain(['stop', '--dir', dir]);
    assert.equal(stopped.code, 0, stopped.stderr);
    assert.equal(isAlive(info.temporal!.pid), false);
    assert.equal(isAlive(info.s3!.pid), false);
    assert.equal((await runMain(['status', '--dir', dir])).code, 1);
    assert.equal((await runMain(['stop', '--dir', dir])).code, 0, 'stop is idempotent');
  });

  it('servers die when the process that started them is killed (SIGKILL)', async () => {
    const dir = path.join(tmp, 'orphan');
    const child = spawn(process.execPath, [MAIN, 'start', '--dir', dir, '--foreground'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    try {
      await waitFor(() => /Ctrl-C stops the stack/.test(out), 60_000, `foreground stack to start:\n${out}`, 100);
      const info = readStackFile(dir)!;
      const pids = [info.temporal!.pid, info.s3!.pid];
      for (const pid of pids) assert.equal(isAlive(pid), true);
      child.kill('SIGKILL');
      await waitFor(() => pids.every((p) => !isAlive(p)), 20_000, `servers ${pids.join(', ')} to exit after their parent died`, 100);
      await waitFor(() => !groupAlive(info.temporal!.pgid) && !groupAlive(info.s3!.pgid), 5_000, 'watchdogs to exit', 100);
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
  });

  it('foreground CLI stops its servers on SIGTERM', async () => {
    const dir = path.join(tmp, 'fg');
    const child = spawn(process.execPath, [MAIN, 'start', '--dir', dir, '--foreground'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    await waitFor(() => /Ctrl-C stops the stack/.test(out), 60_000, `foreground stack to start:\n${out}`, 100);
    const info = readStackFile(dir)!;
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    child.kill('SIGTERM');
    assert.equal(await exited, 0, out);
    assert.equal(isAlive(info.temporal!.pid), false);
    assert.equal(isAlive(info.s3!.pid), false);
    assert.ok(existsSync(path.join(dir, 'temporal', 'temporal.sqlite')));
    assert.ok(readStackFile(dir)?.stoppedAt);
  });
});
