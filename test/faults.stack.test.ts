/**
 * The local stack heals itself: a server that is SIGKILLed comes back on the same port with the
 * same data folder, restarted by the supervisor of the process that owns the stack (this one
 * for an attached stack; a detached supervise.js process for a background one), and `start` on
 * a background stack that lost a server restarts only that server.
 */
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Client, Connection } from '@temporalio/client';
import { storeFromEnv } from '../store/index';
import { isAlive, readStackFile, serverAlive, stackStatus, startLocalStack, temporalHealthy, type LocalStack } from '../infra/stack/index';
import { runNode, sleep, waitFor } from './support/processes';

const MAIN = path.join(__dirname, '..', 'infra', 'stack', 'main.js');
const quiet = () => undefined;

const runMain = (args: string[]) => runNode(MAIN, args, { timeout: 180_000 });

async function withClient<T>(address: string, f: (client: Client) => Promise<T>): Promise<T> {
  const connection = await Connection.connect({ address, connectTimeout: 10_000 });
  try {
    return await f(new Client({ connection }));
  } finally {
    await connection.close();
  }
}

/** A workflow nobody runs (no worker polls its queue): it stays Running in the server's database. */
async function startIdleWorkflow(address: string, workflowId: string): Promise<void> {
  await withClient(address, (client) => client.workflow.start('nobodyRunsThis', { workflowId, taskQueue: 'faults-no-worker', args: [] }));
}

async function workflowStatus(address: string, workflowId: string): Promise<string> {
  return withClient(address, async (client) => (await client.workflow.getHandle(workflowId).describe()).status.name);
}

function kill9(pid: number): void {
  process.kill(pid, 'SIGKILL');
}

describe('a stack whose servers are SIGKILLed', () => {
  let tmp: string;
  const stacks: LocalStack[] = [];
  before(async () => {
    tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'ntml-faults-stack-'));
  });
  after(async () => {
    await Promise.all(stacks.map((s) => s.stop()));
    await runMain(['stop', '--dir', path.join(tmp, 'bg')]);
    await fsp.rm(tmp, { recursive: true, force: true });
  });

  it('attached: the supervisor in this process restarts Temporal and versitygw (SIGKILL, SIGTERM) on the same ports with their data', async () => {
    const dir = path.join(tmp, 'attached');
    const stack = await startLocalStack({ dir, log: quiet });
    stacks.push(stack);
    assert.ok(stack.supervisor, 'an attached stack is supervised by default');
    const address = stack.temporal!.address;
    const endpoint = stack.s3!.endpoint;
    await startIdleWorkflow(address, 'faults-before-the-crash');
    const store = storeFromEnv({ ...stack.env });
    const data = new Uint8Array(randomBytes(20_000));
    const ref = await store.put(data);

    const oldTemporal = stack.temporal!.pid;
    const t0 = Date.now();
    kill9(oldTemporal);
    await waitFor(() => stack.temporal!.pid !== oldTemporal, 120_000, 'the Temporal dev server to be restarted');
    console.log(`Temporal back ${Date.now() - t0} ms after SIGKILL`);
    assert.equal(isAlive(oldTemporal), false);
    assert.equal(stack.temporal!.address, address, 'same port');
    assert.equal(await temporalHealthy(address), true);
    assert.equal(await workflowStatus(address, 'faults-before-the-crash'), 'RUNNING', 'the history survived in the same database');

    const oldS3 = stack.s3!.pid;
    const t1 = Date.now();
    kill9(oldS3);
    await waitFor(() => stack.s3!.pid !== oldS3, 60_000, 'versitygw to be restarted');
    console.log(`versitygw back ${Date.now() - t1} ms after SIGKILL`);
    assert.equal(stack.s3!.endpoint, endpoint, 'same port');
    assert.deepEqual(Buffer.from(await store.get(ref)), Buffer.from(data), 'the object survived, read through the same store');

    // SIGTERM (someone stopping the server, not its owner stopping the stack) is a death like any other
    const termed = stack.temporal!.pid;
    process.kill(termed, 'SIGTERM');
    await waitFor(() => stack.temporal!.pid !== termed, 120_000, 'the Temporal dev server to be restarted after SIGTERM');
    assert.equal(stack.temporal!.address, address);
    assert.equal(await workflowStatus(address, 'faults-before-the-crash'), 'RUNNING');

    // the supervisor hands the new server to its owner before it rewrites the stack file: wait
    // for the file to catch up (on a loaded machine the write can trail by a poll or more)
    await waitFor(() => readStackFile(dir)!.temporal!.pid === stack.temporal!.pid, 30_000, 'the stack file to name the restarted Temporal');
    const info = readStackFile(dir)!;
    assert.equal(info.s3!.pid, stack.s3!.pid);
    assert.deepEqual(info.restarts, stack.supervisor!.restarts, 'the file and the supervisor count the same restarts');
    // two deaths of Temporal, one of versitygw; a restarted server that died while coming up (a
    // port still held by the SIGTERMed one) is one more restart, never fewer
    assert.ok(stack.supervisor!.restarts.temporal >= 2, `temporal restarts ${stack.supervisor!.restarts.temporal}`);
    assert.equal(stack.supervisor!.restarts.s3, 1);

    // stop() stops the restarted servers, and nothing restarts them afterwards
    const pids = [stack.temporal!.pid, stack.s3!.pid];
    await stack.stop();
    await sleep(1_500);
    for (const pid of pids) assert.equal(isAlive(pid), false);
    assert.equal(readStackFile(dir)!.temporal!.pid, pids[0]);
    assert.ok(readStackFile(dir)!.stoppedAt);
  });

  it('background: its supervisor process restarts a dead server; `start` restarts only what is dead; `stop` ends all', async () => {
    const dir = path.join(tmp, 'bg');
    const started = await runMain(['start', '--dir', dir]);
    assert.equal(started.code, 0, started.stderr);
    const first = readStackFile(dir)!;
    assert.ok(first.supervisor && serverAlive(first.supervisor.pid, 'supervise.js'), 'a supervisor process runs');
    const address = first.temporal!.address;
    await startIdleWorkflow(address, 'faults-background');

    kill9(first.temporal!.pid);
    await waitFor(() => readStackFile(dir)!.temporal!.pid !== first.temporal!.pid, 120_000, 'the supervisor to restart Temporal');
    await waitFor(() => temporalHealthy(address), 30_000, 'Temporal to answer on its old port');
    assert.equal(await workflowStatus(address, 'faults-background'), 'RUNNING');
    assert.match(await fsp.readFile(first.supervisor!.logFile, 'utf8'), /Temporal dev server \(pid \d+\) is gone; restarting it on port \d+/);

    // without its supervisor, a lost server is brought back by the next `start`, the rest untouched
    const second = readStackFile(dir)!;
    kill9(second.supervisor!.pid);
    await waitFor(() => !serverAlive(second.supervisor!.pid, 'supervise.js'), 10_000, 'the supervisor to die');
    kill9(second.s3!.pid);
    await waitFor(() => !serverAlive(second.s3!.pgid, 'versitygw'), 10_000, 'versitygw to die');
    const again = await runMain(['start', '--dir', dir]);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stderr, /restarted s3, which had died/);
    const third = readStackFile(dir)!;
    assert.equal(third.temporal!.pid, second.temporal!.pid, 'Temporal kept running');
    assert.notEqual(third.s3!.pid, second.s3!.pid);
    assert.equal(third.s3!.endpoint, second.s3!.endpoint, 'versitygw back on its port');
    assert.notEqual(third.supervisor!.pid, second.supervisor!.pid);
    assert.deepEqual(third.restarts, { temporal: 1, s3: 1 });
    const status = await stackStatus(dir);
    assert.equal(status.ok, true, JSON.stringify(status));
    assert.equal(status.supervisor?.running, true);

    // a second `start` with everything up changes nothing
    const idle = await runMain(['start', '--dir', dir]);
    assert.equal(idle.code, 0, idle.stderr);
    assert.equal(readStackFile(dir)!.s3!.pid, third.s3!.pid);
    // an attached start would own the stack and stop it when done: refused on a background stack
    await assert.rejects(startLocalStack({ dir, log: quiet }), /already running in .* in the background/);

    const stopped = await runMain(['stop', '--dir', dir]);
    assert.equal(stopped.code, 0, stopped.stderr);
    const last = readStackFile(dir)!;
    for (const pid of [last.temporal!.pid, last.s3!.pid, last.supervisor!.pid]) assert.equal(isAlive(pid), false, `pid ${pid}`);
  });
});
