/** `ntml purify` and its subcommands status, attach and cancel. */
import * as path from 'node:path';
import type { Client, WorkflowHandle } from '@temporalio/client';
import type { purify } from '../workflows/purify';
import type { PurifyOutcome } from '../workflows/contract';
import { flag, stringOption, type ParsedArgs } from './args';
import { describeConfig, loadPurifyConfig, missingLocalInputs } from './config';
import { ConfigError } from '../schemas/purify';
import { UsageError, UserError, debug, failureMessage } from './errors';
import { duration, summaryTable, timestamp } from './format';
import type { Embedded } from './embedded';

export interface Io {
  stdout: NodeJS.WriteStream;
  stderr: NodeJS.WriteStream;
  /** aborted on the first Ctrl-C */
  signal: AbortSignal;
}

const RUN_ID = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$/;
const INTERRUPTED = 130;

function checkRunId(id: string): string {
  if (!RUN_ID.test(id)) {
    throw new UsageError(`run id "${id}" must be letters, digits, ".", "_", ":" and "-" (it also names the output folder)`);
  }
  return id;
}

function info(io: Io, line: string): void {
  io.stderr.write(`${line}\n`);
}

/** The error a finished-with-failure run gives, as one message. */
async function runFailure(err: unknown, id: string): Promise<UserError> {
  const { WorkflowFailedError } = await import('@temporalio/client');
  const { CancelledFailure, TerminatedFailure, TimeoutFailure } = await import('@temporalio/common');
  if (err instanceof WorkflowFailedError) {
    const cause = err.cause;
    if (cause instanceof CancelledFailure) return new UserError(`run ${id} was cancelled`);
    if (cause instanceof TerminatedFailure) return new UserError(`run ${id} was terminated${cause.message ? `: ${cause.message}` : ''}`);
    if (cause instanceof TimeoutFailure) return new UserError(`run ${id} timed out`);
    return new UserError(`run ${id} failed: ${failureMessage(err)}`);
  }
  if (err instanceof UserError) return err;
  return new UserError(`run ${id}: ${failureMessage(err)}`);
}

async function finish(
  io: Io,
  outcome: PurifyOutcome,
  opts: { id: string; outDir?: string; modelDir?: string; startedAt?: Date },
): Promise<void> {
  const { writeOutputs, shown } = await import('./output');
  const dir = opts.outDir ?? path.join('runs', opts.id);
  const written = await writeOutputs(outcome, { dir, modelDir: opts.modelDir });
  const took = opts.startedAt ? ` in ${duration((Date.now() - opts.startedAt.getTime()) / 1000)}` : '';
  info(io, `\nrun ${opts.id} finished${took}. Report:\n`);
  io.stdout.write(`${written.markdown.trimEnd()}\n`);
  info(
    io,
    [
      '',
      `written to ${shown(written.dir)}/:`,
      `  report      ${shown(written.reportMd)}, ${shown(written.reportJson)}`,
      `  model       ${shown(written.modelJson)} + ${path.basename(written.weightsBin)} (tfjs layers format, purified student)`,
    ].join('\n'),
  );
}

// --- ntml purify --config FILE ---------------------------------------------------------

/** One trace per command: with telemetry on, the run's workflow, stages and epochs hang below this span. */
export async function purifyRun(args: ParsedArgs, io: Io): Promise<number> {
  const { inSpan } = await import('../telemetry/spans');
  return inSpan('ntml purify', { 'ntml.command': 'purify', 'ntml.config_file': stringOption(args, 'config') ?? '' }, () => purifyRunTraced(args, io));
}

async function purifyRunTraced(args: ParsedArgs, io: Io): Promise<number> {
  const configFile = stringOption(args, 'config');
  if (!configFile) throw new UsageError('missing --config FILE (a YAML or JSON run configuration, e.g. examples/demo.yaml)');
  const addressFlag = stringOption(args, 'address');
  const local = flag(args, 'local');
  const detach = flag(args, 'detach');
  if (local && addressFlag) throw new UsageError('--local and --address exclude each other');
  const envAddress = process.env.NTML_TEMPORAL_ADDRESS?.trim();
  const remote = !local && (addressFlag ?? envAddress) !== undefined && (addressFlag ?? envAddress) !== '';
  if (detach && !remote) {
    throw new UsageError(
      '--detach needs a Temporal server whose workers outlive this command: pass --address HOST:PORT or set NTML_TEMPORAL_ADDRESS ' +
        '(the embedded stack and its workers stop when "ntml purify" ends)',
    );
  }

  // 1. the config, before anything starts
  const config = loadPurifyConfig(configFile);
  // this command's own workers read the local inputs: a missing one fails here, naming the field
  // (a remote server's workers resolve paths on their own machines)
  const missing = remote ? [] : missingLocalInputs(config.parsed);
  if (missing.length) throw new ConfigError(`${configFile}: inputs not found:\n  ${missing.join('\n  ')}`, missing);
  const runId = stringOption(args, 'id') ?? `purify-${config.parsed.name ?? 'run'}-${timestamp()}`;
  checkRunId(runId);
  info(io, `config ${configFile}: ${describeConfig(config.parsed)}`);
  if (config.dataChoice) info(io, `data: ${config.dataChoice}`);
  const outDir = stringOption(args, 'out');
  const modelDir = config.parsed.export?.dir;

  // 2. the server (and, embedded, the stack and workers)
  const { connectClient, findTarget, namespaceFrom } = await import('./temporal');
  const { queuesFromEnv, queueOptions, missingWorkers } = await import('./connection');
  const namespace = namespaceFrom(stringOption(args, 'namespace'));
  // a deployment with its own queue names sets them for its workers and for this command alike;
  // the workers this command starts poll the same names
  const queues = queuesFromEnv();
  let embedded: Embedded | undefined;
  let interrupted = false;
  try {
    let address: string;
    let source: string;
    if (remote) {
      const target = findTarget(addressFlag)!;
      address = target.address;
      source = target.source;
    } else {
      const { startEmbedded } = await import('./embedded');
      embedded = await startEmbedded({ namespace, log: (l) => info(io, l), queues });
      address = embedded.address;
      source = 'the embedded stack';
    }
    if (io.signal.aborted) {
      interrupted = true;
      info(io, 'interrupted before the run started');
      return INTERRUPTED;
    }
    const { client } = await connectClient({ address, source, local: !remote }, namespace);
    const options = queueOptions(queues);

    // 3. start the workflow
    let handle: WorkflowHandle<typeof purify>;
    try {
      handle = await client.workflow.start<typeof purify>('purify', {
        taskQueue: queues.orchestration,
        workflowId: runId,
        // a run id names one run (and its output folder), even after that run has ended
        workflowIdReusePolicy: 'REJECT_DUPLICATE',
        args: [{ config: config.raw, ...(options ? { options } : {}) }],
      });
    } catch (err) {
      const { WorkflowExecutionAlreadyStartedError } = await import('@temporalio/client');
      if (err instanceof WorkflowExecutionAlreadyStartedError) {
        throw new UsageError(`a run with id ${runId} already exists on ${address}; pass another --id`);
      }
      throw new UserError(`cannot start the run on ${address}: ${failureMessage(err)}`);
    }
    const startedAt = new Date();
    info(io, `run ${runId} started on ${address} (namespace ${namespace}, from ${source})`);
    const missing = await missingWorkers({ client, queues, address });
    if (missing) info(io, `warning: ${missing}`);
    if (detach) {
      io.stdout.write(`${runId}\n`);
      info(io, `detached. Follow it: ntml purify attach ${runId}   state: ntml purify status ${runId}   stop: ntml purify cancel ${runId}`);
      return 0;
    }
    info(io, `(Ctrl-C ${remote ? 'stops watching; the run goes on' : 'stops the run'}; elsewhere: ntml purify status ${runId})\n`);

    // 4. live progress, then the report
    const { watchRun } = await import('./progress');
    let outcome: PurifyOutcome | undefined;
    try {
      outcome = await watchRun(client, handle, {
        out: io.stderr,
        tty: Boolean(io.stderr.isTTY),
        signal: io.signal,
        failed: embedded?.workersFailed,
        address,
      });
    } catch (err) {
      throw await runFailure(err, runId);
    }
    if (!outcome) {
      interrupted = true;
      if (remote) {
        info(io, `\nstopped watching; run ${runId} goes on. Follow it again: ntml purify attach ${runId}   stop it: ntml purify cancel ${runId}`);
      } else if (embedded?.ownsStack) {
        // the embedded servers stop with the signal (infra/stack); the next embedded start terminates the run
        info(io, `\ninterrupted: run ${runId} stopped unfinished with the embedded stack`);
      } else {
        info(io, `\ninterrupted: cancelling run ${runId} ...`);
        await cancelAndWait(handle, 10_000);
        info(io, `run ${runId} cancelled; stopping the workers${await stackNote()}`);
      }
      return INTERRUPTED;
    }
    await finish(io, outcome, { id: runId, outDir, modelDir, startedAt });
    return 0;
  } finally {
    if (embedded) {
      debug('stopping');
      if (!interrupted) info(io, embedded.ownsStack ? 'stopping the embedded stack and workers ...' : `stopping the workers${await stackNote()} ...`);
      await embedded.stop({ fast: interrupted && embedded.ownsStack });
    }
  }
}

/** " (the stack keeps running)" only when the local stack is up; a dead one is said to be down. */
async function stackNote(): Promise<string> {
  const { localStackUp } = await import('./connection');
  return (await localStackUp()) ? ' (the stack keeps running)' : ' (the local stack is not up: ntml stack status)';
}

async function cancelAndWait(handle: WorkflowHandle, ms: number): Promise<void> {
  try {
    await handle.cancel();
  } catch (err) {
    debug(`cancel failed: ${(err as Error).message}`);
    return;
  }
  debug('cancellation requested');
  await Promise.race([handle.result().catch(() => undefined), new Promise((r) => setTimeout(r, ms))]);
  debug('run closed (or gave up waiting)');
}

// --- ntml purify status|attach|cancel ID ------------------------------------------------

async function openRun(args: ParsedArgs, id: string): Promise<{ client: Client; handle: WorkflowHandle; address: string; local: boolean; namespace: string }> {
  const { connectClient, namespaceFrom, requireTarget } = await import('./temporal');
  const target = requireTarget(stringOption(args, 'address'));
  const namespace = namespaceFrom(stringOption(args, 'namespace'));
  const { client } = await connectClient(target, namespace);
  const handle = client.workflow.getHandle(id);
  try {
    await handle.describe();
  } catch (err) {
    const { WorkflowNotFoundError } = await import('@temporalio/client');
    if (err instanceof WorkflowNotFoundError) {
      throw new UserError(`no run ${id} on ${target.address} (namespace ${namespace}, from ${target.source})`);
    }
    throw new UserError(`cannot look up run ${id} on ${target.address}: ${failureMessage(err)}`);
  }
  return { client, handle, address: target.address, local: target.local ?? false, namespace };
}

export async function purifyStatus(args: ParsedArgs, io: Io): Promise<number> {
  const id = args.positionals[0];
  const { client, handle, address } = await openRun(args, id);
  const { snapshot, stageOf, epochText, outageText } = await import('./progress');
  const s = await snapshot(client, handle);
  const end = s.closeTime ?? new Date();
  const lines = [
    `run      ${id}  (on ${address})`,
    `status   ${s.status}  (started ${s.startTime.toISOString()}, ${s.closeTime ? 'ran' : 'running for'} ${duration((end.getTime() - s.startTime.getTime()) / 1000)})`,
  ];
  if (s.status === 'RUNNING') {
    const stage = stageOf(s);
    const epoch = s.activity && !s.activity.started && !s.activity.heartbeat ? '(waiting for a training worker to pick it up)' : epochText(s.activity?.heartbeat, true);
    lines.push(`stage    ${stage}${epoch ? `  ${epoch}` : ''}`);
    const outage = outageText(s.activity?.heartbeat);
    if (outage) lines.push(`store    ${outage}`);
    if (s.progress?.completed.length) lines.push(`done     ${s.progress.completed.join(', ')}`);
    if (s.activity && s.activity.attempt > 1) {
      lines.push(`retry    attempt ${s.activity.attempt}${s.activity.lastFailure ? `, last failure: ${s.activity.lastFailure.split('\n')[0]}` : ''}`);
    }
    if (!s.progress) lines.push('         (no worker answered the progress query: are the workers running?)');
  }
  io.stdout.write(`${lines.join('\n')}\n`);
  if (s.status === 'COMPLETED') {
    const outcome = (await handle.result()) as PurifyOutcome;
    io.stdout.write(`\n${summaryTable(outcome.summary)}\n`);
    const dir = path.join('runs', id);
    const { existsSync } = await import('node:fs');
    io.stdout.write(
      existsSync(path.join(dir, 'report.md'))
        ? `\nreport: ${path.join(dir, 'report.md')}\n`
        : `\nreport and model: ntml purify attach ${id} writes them to ${dir}/\n`,
    );
  } else if (s.status !== 'RUNNING') {
    try {
      await handle.result();
    } catch (err) {
      io.stdout.write(`${(await runFailure(err, id)).message}\n`);
    }
  }
  return 0;
}

export async function purifyAttach(args: ParsedArgs, io: Io): Promise<number> {
  const id = args.positionals[0];
  const { client, handle, address, local, namespace } = await openRun(args, id);
  const outDir = stringOption(args, 'out');
  const d = await handle.describe();
  info(io, `attached to run ${id} on ${address} (${d.status.name}, started ${d.startTime.toISOString()})`);
  let outcome: PurifyOutcome | undefined;
  let embedded: Embedded | undefined;
  try {
    if (d.status.name === 'RUNNING') {
      // on a local stack this command runs workers for the run (as "ntml purify" does: the stack
      // has none of its own); on a remote server it says when nobody serves the run's queues
      const { missingWorkers, queuesFromEnv } = await import('./connection');
      const queues = { orchestration: d.taskQueue, training: queuesFromEnv().training };
      if (local) {
        const { startEmbedded } = await import('./embedded');
        embedded = await startEmbedded({ namespace, log: (l) => info(io, l), queues });
      } else {
        const missing = await missingWorkers({ client, queues, address });
        if (missing) info(io, `warning: ${missing}`);
      }
      info(io, embedded ? '(Ctrl-C stops watching and the workers of this command; attach again to continue)\n' : '(Ctrl-C stops watching; the run goes on)\n');
      const { watchRun } = await import('./progress');
      outcome = await watchRun(client, handle, { out: io.stderr, tty: Boolean(io.stderr.isTTY), signal: io.signal, failed: embedded?.workersFailed, address });
      if (!outcome) {
        info(io, embedded ? `\nstopped; run ${id} waits for workers (ntml purify attach ${id})` : `\nstopped watching; run ${id} goes on (ntml purify attach ${id})`);
        return INTERRUPTED;
      }
    } else {
      outcome = (await handle.result()) as PurifyOutcome;
    }
  } catch (err) {
    throw await runFailure(err, id);
  } finally {
    await embedded?.stop();
  }
  await finish(io, outcome, { id, outDir, startedAt: d.status.name === 'RUNNING' ? d.startTime : undefined });
  return 0;
}

export async function purifyCancel(args: ParsedArgs, io: Io): Promise<number> {
  const id = args.positionals[0];
  const { handle } = await openRun(args, id);
  const d = await handle.describe();
  if (d.status.name !== 'RUNNING') throw new UserError(`run ${id} is not running (${d.status.name})`);
  try {
    await handle.cancel();
  } catch (err) {
    throw new UserError(`cannot cancel run ${id}: ${failureMessage(err)}`);
  }
  io.stdout.write(`cancellation of run ${id} requested; the current stage stops at its next batch\n`);
  return 0;
}
