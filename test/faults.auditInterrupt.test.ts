/**
 * `ntml audit run` stopped with Ctrl-C (SIGINT) on its own embedded stack (in a temporary folder),
 * in the middle of the Neural Cleanse scan: exit 130 within seconds, without grpc-js' "Channel has
 * been shut down" or another uncaught error (the crash cli/callScope.ts prevents), and nothing of
 * the command left running: no worker process, no stack server. The same stack folder then serves
 * the next audit, which terminates the interrupted one and finishes with a verdict.
 */
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, test } from 'node:test';
import { CRASH_TEXT, NTML_BIN, embeddedEnv, isRunning, sleep, spawnedProcesses, trainingWorkersOf, waitFor, type OutputProcess } from './support/processes';
import { auditRequest, writeReferenceSet } from './support/auditHarness';
import { createClassifier, exportLayersModel } from '../core/models/layersFormat';
import { groupAlive, readStackFile } from '../infra/stack/index';
import { VERDICT_EXIT } from '../cli/audit';

/** cli/embedded.ts' fast stop after Ctrl-C (1.5 s) and the connection's settle (1 s), plus slack for a loaded 2-core machine */
const EXIT_BOUND_MS = 20_000;
/** the stack servers' watchdogs end them with their parent at the latest; slack as above */
const SERVERS_GONE_BOUND_MS = 30_000;

const processes = spawnedProcesses();
const tmp = path.join(os.tmpdir(), `ntml-faults-audit-interrupt-${process.pid}`);

after(async () => {
  await processes.killAll();
  await fsp.rm(tmp, { recursive: true, force: true });
});

const ntml = (args: string[]): OutputProcess => processes.spawn([NTML_BIN, ...args], embeddedEnv(), tmp);

/**
 * An audit request for an untrained tinyCnn as a tfjs layers model (what the model has learned
 * does not matter here, only that the command is busy when Ctrl-C lands), on a 200-image
 * reference set; Neural Cleanse with `stepsPerClass` steps, or none.
 */
async function writeRequest(name: string, modelId: string, stepsPerClass: number | 'disabled'): Promise<string> {
  const folder = path.join(tmp, 'model');
  const model = createClassifier('tinyCnn', { height: 32, width: 32, channels: 3 }, 10, 1);
  await exportLayersModel(model, folder);
  model.model.dispose();
  const request = auditRequest({
    modelId,
    model: { layersModel: path.join(folder, 'model.json') },
    referenceSet: { format: 'ntml', location: await writeReferenceSet(tmp) },
    policy: { neuralCleanse: stepsPerClass === 'disabled' ? { enabled: false } : { stepsPerClass } },
  });
  const file = path.join(tmp, `${name}.json`);
  await fsp.writeFile(file, JSON.stringify(request));
  return file;
}

test('Ctrl-C of ntml audit run on the embedded stack mid-scan: exit 130, no crash text, no worker or server left; the next audit on that stack finishes', { timeout: 600_000 }, async () => {
  await fsp.mkdir(tmp, { recursive: true });
  const stackDir = path.join(tmp, 'stack');
  const modelId = `interrupt-${Date.now().toString(36)}`;
  const auditId = `audit-${modelId}-interrupted`;
  // 2,000 steps for each of 10 classes: minutes of scanning, far longer than this test waits
  const long = await writeRequest('long', modelId, 2_000);

  const cli = ntml(['audit', 'run', '--request', long, '--id', auditId, '--stack-dir', stackDir, '--out', path.join(tmp, 'out-1')]);
  await waitFor(() => cli.exitCode !== null || /^ {2}neuralCleanse \.\.\.$/m.test(cli.output()), 300_000, () => `the Neural Cleanse stage:\n${cli.output()}`);
  assert.equal(cli.exitCode, null, cli.output());
  // the servers this command started, as its stack file records them
  const stack = readStackFile(stackDir);
  assert.ok(stack?.temporal && stack.s3 && stack.ownerPid === cli.pid, `the command owns the stack in ${stackDir}: ${JSON.stringify(stack)}`);
  const servers = [stack.temporal.pgid, stack.s3.pgid];
  // into the scan, with its progress queries and the result's long poll pending
  await sleep(2_000);
  assert.equal(cli.exitCode, null, `still scanning:\n${cli.output()}`);

  const t0 = Date.now();
  cli.kill('SIGINT');
  const code = await Promise.race([cli.exited, sleep(EXIT_BOUND_MS).then(() => `still running ${EXIT_BOUND_MS} ms after Ctrl-C`)]);
  const exitMs = Date.now() - t0;
  assert.equal(code, 130, cli.output());
  assert.doesNotMatch(cli.output(), CRASH_TEXT);
  assert.match(cli.output(), new RegExp(`audit ${auditId}: stopped with this command's workers`));
  assert.deepEqual(trainingWorkersOf(cli.pid!), [], 'no training worker process of the command');
  const serversLeft = () => servers.filter((pgid) => groupAlive(pgid));
  await waitFor(() => serversLeft().length === 0, SERVERS_GONE_BOUND_MS, () => `the stack's servers to exit (process groups left: ${serversLeft().join(', ')})`);
  assert.equal(isRunning(cli.pid!), false);
  console.log(`SIGINT mid-scan: exit 130 after ${exitMs} ms; its stack servers gone ${Date.now() - t0} ms after the signal`);

  // the same stack folder: the next audit starts it again, ends the interrupted audit, and finishes
  const quick = await writeRequest('quick', modelId, 'disabled');
  const next = ntml(['audit', 'run', '--request', quick, '--id', `audit-${modelId}-next`, '--stack-dir', stackDir, '--out', path.join(tmp, 'out-2')]);
  const nextCode = await next.exited;
  assert.ok((Object.values(VERDICT_EXIT) as number[]).includes(nextCode!), `exit code ${nextCode} is a verdict's:\n${next.output()}`);
  assert.match(next.output(), new RegExp(`terminated run ${auditId}, left unfinished`));
  assert.doesNotMatch(next.output(), CRASH_TEXT);
});
