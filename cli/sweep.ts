/**
 * ntml sweep start|resume|status|cancel|report and ntml store gc.
 * A sweep's workflow id is `sweep-<name>`: starting the same spec again resumes it in place
 * (finished cells are found in the store and skipped, shared stages come from the cache).
 */
import { withStore } from './store';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import type { Client } from '@temporalio/client';
import { flag, intOption, stackDirOption, stringOption, type CommandSpec, type ParsedArgs } from './args';
import { missingLocalInputs, readConfigFile, substituteAutoData } from './config';
import { UsageError, UserError, failureMessage } from './errors';
import { etaText, sweepEta } from './sweepEta';
import type { Io } from './purify';
import type { Connected } from './connection';
import type { SweepCellRecord, SweepOutcome, SweepProgress } from '../workflows/contract';
import { expandSweep, parseSweepSpec } from '../schemas/sweep';
import { ConfigError, parsePurifyConfig } from '../schemas/purify';
import { SEED_ROLES, SeedRoleError, type SeedRole } from '../schemas/seedRoles';

const address = { name: 'address', value: 'HOST:PORT', help: 'Temporal frontend (default: $NTML_TEMPORAL_ADDRESS, else the local stack)' };
const namespace = { name: 'namespace', value: 'NS', help: 'Temporal namespace (default: $NTML_NAMESPACE or "default")' };
const out = { name: 'out', value: 'DIR', help: 'report folder (default: runs/sweeps/<name>/)' };

export const sweepStartSpec: CommandSpec = {
  name: 'sweep start',
  brief: 'run (or resume in place) a sweep spec: cells as child workflows, then the report',
  synopsis: ['ntml sweep start --spec FILE [options]'],
  summary: 'Run every cell of a sweep spec (attacks x defenses x models x budgets x seeds) with a concurrency cap.',
  options: [
    { name: 'spec', value: 'FILE', help: 'sweep spec, YAML or JSON (see examples/sweep.yaml)' },
    address,
    namespace,
    out,
    { name: 'detach', help: 'start and return (needs --address and workers of their own)' },
    {
      name: 'training-processes',
      value: 'N',
      help: 'embedded stack only: training worker processes, each with cores/N TensorFlow threads (default on CPU: min(concurrency, cores); 1 = one worker in this process)',
    },
    stackDirOption,
  ],
  details: `The spec is expanded and every cell validated before anything starts. Cells that share data,
attack, model, training recipe and seed run their standard training once (the first of them
runs first; the rest reuse its cached stages); cells that differ only in what a learned
trigger does not read (Narcissus' rate) learn that trigger once the same way. Failed cells are
listed, not fatal; running the same spec again ("ntml sweep resume") finishes only what is missing.
Without --address and $NTML_TEMPORAL_ADDRESS the command runs on the stack "ntml stack start"
left running, else on an embedded one, with workers in this process either way; the queues
are $NTML_ORCHESTRATION_TASK_QUEUE / $NTML_TRAINING_TASK_QUEUE (or the defaults) everywhere.
When no worker polls a queue, the command says so within seconds and keeps waiting.
Ctrl-C stops the workers this command started (remote: stops watching; the sweep goes on).
On the embedded stack, cells run in parallel in separate training processes that split the
cores (one TensorFlow process keeps only ~1.6 of 2 cores busy; see docs/performance.md).`,
};
export const sweepResumeSpec: CommandSpec = {
  ...sweepStartSpec,
  name: 'sweep resume',
  brief: 'finish what is missing of a sweep (sweep start with the same --spec)',
  synopsis: ['ntml sweep resume --spec FILE [options]'],
  // it takes the spec file, not the NAME that status, cancel and report take: say so first
  summary:
    'Finish what is missing of a sweep: the same as "ntml sweep start" with the spec file it was started with. Finished cells are kept; stages in progress continue from their last checkpoint.',
};
export const sweepStatusSpec: CommandSpec = {
  name: 'sweep status',
  brief: 'progress of a sweep: done / running / failed / reused, ETA',
  summary: 'Show the progress of a sweep.',
  positionals: [{ name: 'NAME', help: 'the sweep name from its spec' }],
  options: [address, namespace, stackDirOption],
  details: `The ETA costs every cell not started at the mean wall time of the cells this run finished, and
each running cell at that mean less the time it has run (none when it has run longer), with the
spec's concurrency cells at once. Until a cell of this run has finished there is no mean: the
line says "ETA after the first cell finishes".`,
};
export const sweepCancelSpec: CommandSpec = {
  name: 'sweep cancel',
  brief: 'cancel a sweep and its running cells',
  summary: 'Cancel a sweep; running cells are cancelled through their heartbeats.',
  positionals: [{ name: 'NAME', help: 'the sweep name' }],
  options: [address, namespace, stackDirOption],
};
export const sweepReportSpec: CommandSpec = {
  name: 'sweep report',
  brief: 'tables (Markdown, CSV, JSON) and plots from the stored cell results',
  summary: 'Build the sweep report from the stored results only (no Temporal needed).',
  positionals: [{ name: 'NAME', help: 'the sweep name' }],
  options: [out, stackDirOption],
};
export const storeGcSpec: CommandSpec = {
  name: 'store gc',
  brief: 'delete artifacts no run, sweep or cache record references',
  summary: 'Garbage-collect the artifact store. Run it while no workflow is writing.',
  options: [
    { name: 'dry-run', help: 'list what would be deleted and the space it frees; delete nothing' },
    { name: 'drop-checkpoints', help: 'also reclaim the per-epoch checkpoints of finished stages' },
    stackDirOption,
  ],
};

const info = (io: Io, line: string) => io.stderr.write(`${line}\n`);

function loadSpec(file: string) {
  try {
    const raw = readConfigFile(file) as Record<string, unknown>;
    // `data: {format: auto}` in the base resolves once, here, so every cell (and a resume) sees the same data
    let dataChoice: string | undefined;
    if (raw && typeof raw === 'object' && raw.base && typeof raw.base === 'object') {
      const sub = substituteAutoData(raw.base as Record<string, unknown>, process.env, `${file}: base`);
      raw.base = sub.raw;
      dataChoice = sub.choice;
    }
    const spec = parseSweepSpec(raw, file);
    return { raw, spec, cells: expandSweep(spec), dataChoice };
  } catch (err) {
    if (err instanceof ConfigError) throw new UsageError(err.message);
    throw err;
  }
}

async function connectFor(io: Io, args: ParsedArgs, needsWorkers: boolean, trainingProcesses?: number): Promise<Connected> {
  const { connect } = await import('./connection');
  return connect({ address: stringOption(args, 'address'), namespace: stringOption(args, 'namespace'), needsWorkers, trainingProcesses, log: (l) => info(io, l), signal: io.signal });
}

/** The counts, then the ETA text (cli/sweepEta.ts) as given. */
function progressLine(p: SweepProgress, eta: string): string {
  return `sweep ${p.sweep}: ${p.done}/${p.total} done, ${p.running.length} running, ${p.failed} failed, ${p.reused} reused${eta}`;
}

/**
 * One line per running cell: its label, stage and epoch (or trigger round) from the cell's purify
 * run, and an S3 outage its worker is riding out. `live` adds the batch (or round) under way; without it a line changes once per epoch.
 */
export async function runningCellLines(client: Client, p: SweepProgress, live: boolean): Promise<string[]> {
  const { snapshot, stageOf, epochText, outageText } = await import('./progress');
  return Promise.all(
    (p.runningCells ?? []).map(async (cell) => {
      try {
        const s = await snapshot(client, client.workflow.getHandle(cell.workflowId), { query: false });
        const waiting = s.activity && !s.activity.started && !s.activity.heartbeat;
        const detail = waiting ? 'waiting for a training worker' : epochText(s.activity?.heartbeat, live);
        // not live, the block is printed again when it changes: leave out the count of failed attempts
        const outage = live ? outageText(s.activity?.heartbeat) : outageText(s.activity?.heartbeat).replace(/ \(.*\)$/, '');
        return `  ${cell.label}: ${[stageOf(s), detail, outage].filter(Boolean).join('  ')}`;
      } catch {
        return `  ${cell.label}: starting`;
      }
    }),
  );
}

export async function sweepStart(args: ParsedArgs, io: Io): Promise<number> {
  const file = stringOption(args, 'spec');
  if (!file) throw new UsageError('missing --spec FILE (a sweep spec, e.g. examples/sweep.yaml)');
  const { raw, spec, cells, dataChoice } = loadSpec(file);
  if (dataChoice) info(io, `data: ${dataChoice}`);
  info(io, `sweep ${spec.name}: ${cells.length} cells, at most ${spec.concurrency} at once`);
  const detach = flag(args, 'detach');
  const { defaultTrainingProcesses, usableCores } = await import('./trainingProcesses');
  const trainingProcesses = intOption(args, 'training-processes', defaultTrainingProcesses(spec.concurrency), 1, Math.max(64, usableCores()));
  const { resolveSetup, queueOptions, missingWorkers, aborted } = await import('./connection');
  const remote = resolveSetup({ address: stringOption(args, 'address') }).setup === 'remote';
  if (detach && !remote) {
    throw new UsageError('--detach needs --address or $NTML_TEMPORAL_ADDRESS (the workers this command starts stop with it)');
  }
  // this command's workers read the cells' local inputs: a missing one is named before anything starts
  const absent = remote ? [] : [...new Set(cells.flatMap((cell) => missingLocalInputs(parsePurifyConfig(cell.config))))];
  if (absent.length) throw new UsageError(`${file}: inputs not found:\n  ${absent.join('\n  ')}`);
  const c = await connectFor(io, args, true, trainingProcesses);
  const { client, embedded } = c;
  if (!embedded && stringOption(args, 'training-processes') !== undefined) {
    info(io, 'note: --training-processes is for the embedded stack; the workers of this Temporal server are started elsewhere');
  }
  let interrupted = false;
  try {
    const workflowId = `sweep-${spec.name}`;
    const options = queueOptions(c.queues);
    let handle;
    try {
      handle = await client.workflow.start('sweep', { taskQueue: c.queues.orchestration, workflowId, args: [{ spec: raw, ...(options ? { options } : {}) }] });
    } catch (err) {
      const { WorkflowExecutionAlreadyStartedError } = await import('@temporalio/client');
      if (!(err instanceof WorkflowExecutionAlreadyStartedError)) throw err;
      info(io, `sweep ${spec.name} is already running; following it`);
      handle = client.workflow.getHandle(workflowId);
    }
    info(io, `sweep ${spec.name} started on ${c.address} (namespace ${c.namespace}, queue ${c.queues.orchestration}, from ${c.source})`);
    const missing = await missingWorkers(c);
    if (missing) info(io, `warning: ${missing}`);
    if (detach) {
      io.stdout.write(`${workflowId}\n`);
      return 0;
    }
    let last = '';
    const { pollInTurn } = await import('./progress');
    const poll = pollInTurn(async () => {
      try {
        // under c.calls: the query and the cells' lookups are cancelled before the connection closes
        const block = await c.calls.run(async () => {
          const p = await client.connection.withDeadline(Date.now() + 10_000, () => handle.query<SweepProgress>('progress'));
          const cellLines = await runningCellLines(client, p, false);
          // the ETA falls with every poll: it is brought up to date when the rest changes, and only then printed
          return { unchanged: [progressLine(p, ''), ...cellLines].join('\n'), shown: [progressLine(p, etaText(sweepEta(p, Date.now()))), ...cellLines].join('\n') };
        });
        if (block.unchanged !== last && !c.calls.signal.aborted) {
          last = block.unchanged;
          info(io, block.shown);
        }
      } catch {
        // between workflow tasks, after continue-as-new or past the deadline: the next poll answers
      }
    }, 2000);
    let outcome: SweepOutcome | 'aborted';
    try {
      // a Temporal restart (the local stack's supervisor brings it back on its port) is waited out
      const { retryWhileUnreachable } = await import('./connection');
      // the result's long poll is the call most likely pending at Ctrl-C: close() cancels it first
      const { scopedResult } = await import('./callScope');
      const result = retryWhileUnreachable(() => scopedResult<SweepOutcome>(c.calls, client, handle), { signal: c.calls.signal, address: c.address, say: (l) => info(io, l) });
      result.catch(() => undefined);
      outcome = await Promise.race([result, aborted(io.signal), ...(embedded ? [embedded.workersFailed] : [])]);
    } catch (err) {
      // Ctrl-C stops the workers the command started: their exit is the stop, not a failure
      if (io.signal.aborted) outcome = 'aborted';
      else throw new UserError(`sweep ${spec.name} failed: ${failureMessage(err)}`);
    } finally {
      poll.stop();
    }
    if (outcome === 'aborted') {
      interrupted = true;
      info(
        io,
        embedded
          ? `sweep ${spec.name}: stopped. The same command continues it: finished cells are kept, and stages in progress resume from their last checkpoint`
          : `sweep ${spec.name}: stopped watching; it goes on on ${c.address} ("ntml sweep status ${spec.name}", "ntml sweep cancel ${spec.name}")`,
      );
      return 130;
    }
    info(io, outcomeLines(spec.name, outcome).join('\n'));
    await writeReport(io, spec.name, stringOption(args, 'out'));
    return outcome.failed.length ? 1 : 0;
  } finally {
    await c.close({ fast: interrupted && c.setup === 'embedded' });
  }
}

/** How a finished sweep went: the counts, then each failed cell with the first line of its error. */
function outcomeLines(name: string, outcome: SweepOutcome): string[] {
  return [
    `sweep ${name}: ${outcome.completed}/${outcome.total} cells completed (${outcome.reused} found finished), ${outcome.failed.length} failed`,
    ...outcome.failed.map((f) => `  failed cell ${f.cellId}: ${f.error.split('\n')[0]}`),
  ];
}

export async function sweepStatus(args: ParsedArgs, io: Io): Promise<number> {
  const name = args.positionals[0];
  const c = await connectFor(io, args, false);
  const { client } = c;
  try {
    const handle = client.workflow.getHandle(`sweep-${name}`);
    let d;
    try {
      d = await client.connection.withDeadline(Date.now() + 10_000, () => handle.describe());
    } catch (err) {
      const { WorkflowNotFoundError } = await import('@temporalio/client');
      if (err instanceof WorkflowNotFoundError) throw new UserError(`no sweep ${name} on ${c.address} (namespace ${c.namespace}, from ${c.source})`);
      throw new UserError(`cannot look up sweep ${name} on ${c.address}: ${failureMessage(err)}`);
    }
    if (d.status.name === 'COMPLETED') {
      // what the finished sweep did, not only that it finished (its result is stored in its history)
      const outcome = await client.connection.withDeadline(Date.now() + 10_000, () => handle.result() as Promise<SweepOutcome>);
      io.stdout.write(`${[...outcomeLines(name, outcome), `report: ntml sweep report ${name}`].join('\n')}\n`);
      return 0;
    }
    if (d.status.name !== 'RUNNING') {
      io.stdout.write(`sweep ${name}: ${d.status.name.toLowerCase()}\n`);
      return 0;
    }
    // the progress is a query, which only a worker answers: without one it would wait for the deadline
    const { hasPollers, LIVE_POLLER_SECONDS } = await import('./connection');
    const noWorker = `sweep ${name}: running, but no worker polls its queue ${d.taskQueue} on ${c.address}: no progress until one starts\n`;
    if ((await hasPollers(client, d.taskQueue, 'workflow')) === false) {
      io.stdout.write(noWorker);
      return 0;
    }
    try {
      const p = await client.connection.withDeadline(Date.now() + 10_000, () => handle.query<SweepProgress>('progress'));
      io.stdout.write(`${[progressLine(p, etaText(sweepEta(p, Date.now()))), ...(await runningCellLines(client, p, true))].join('\n')}\n`);
    } catch (err) {
      const why = failureMessage(err).split('\n')[0];
      // workers that just stopped (Ctrl-C of the sweep start that ran them) are still listed as
      // pollers for a while; the server then refuses the query for want of one, or lets it time out
      if (/no poller seen/i.test(why)) io.stdout.write(noWorker);
      else if (/DEADLINE_EXCEEDED/.test(why)) {
        io.stdout.write(
          `sweep ${name}: running, but no worker answered the progress query within 10 s (workers stopped in the last ${LIVE_POLLER_SECONDS} s still count as polling): no progress until one runs\n`,
        );
      } else io.stdout.write(`sweep ${name}: running (its worker did not answer the progress query: ${why})\n`);
    }
    return 0;
  } finally {
    await c.close();
  }
}

export async function sweepCancel(args: ParsedArgs, io: Io): Promise<number> {
  const name = args.positionals[0];
  const c = await connectFor(io, args, false);
  try {
    try {
      await c.client.workflow.getHandle(`sweep-${name}`).cancel();
    } catch (err) {
      const { WorkflowNotFoundError } = await import('@temporalio/client');
      // the words of sweep status for the same mistake (a misspelt name, another server)
      if (err instanceof WorkflowNotFoundError) throw new UserError(`no sweep ${name} on ${c.address} (namespace ${c.namespace}, from ${c.source})`);
      throw new UserError(`cannot cancel sweep ${name} on ${c.address}: ${failureMessage(err)}`);
    }
    info(io, `cancellation of sweep ${name} requested; running cells stop at their next heartbeat`);
    return 0;
  } finally {
    await c.close();
  }
}

/**
 * The seed role the sweep's stored spec declared, so a report-seed table refuses dev-seed cells
 * even when the cells' seeds alone would pass as a dev table. A stored spec without the field
 * (written before seed roles) leaves the role to the cells' seeds.
 */
async function storedSeedRole(store: { getRecord<T>(key: string): Promise<T | undefined> }, name: string): Promise<SeedRole | undefined> {
  const key = `sweeps/${name}/spec`;
  const stored = await store.getRecord<{ spec?: { seedRole?: unknown } }>(key);
  const role = stored?.spec?.seedRole;
  if (role === undefined) return undefined;
  if (!SEED_ROLES.includes(role as SeedRole)) throw new UserError(`${key}: spec.seedRole is ${JSON.stringify(role)}, expected one of ${SEED_ROLES.join(', ')}`);
  return role as SeedRole;
}

async function writeReport(io: Io, name: string, outFlag: string | undefined): Promise<void> {
  const dir = outFlag ?? path.join('runs', 'sweeps', name);
  await withStore(io, async (store) => {
    const keys = await store.listRecords(`sweeps/${name}/cells/`);
    if (keys.length === 0) throw new UserError(`no stored results for sweep ${name} in ${store.location}`);
    const records = (await Promise.all(keys.map((k) => store.getRecord<SweepCellRecord>(k)))).filter(Boolean) as SweepCellRecord[];
    const seedRole = await storedSeedRole(store, name);
    // the spec's current cell ids: records under older ids (path-hashed, before content digests) are the same cells twice
    const storedIds = (await store.getRecord<{ cellIds?: unknown }>(`sweeps/${name}/spec`))?.cellIds;
    const cellIds = Array.isArray(storedIds) && storedIds.every((id) => typeof id === 'string') ? (storedIds as string[]) : undefined;
    const { renderSweepReport } = await import('../core/report/svgPlots');
    await fs.mkdir(dir, { recursive: true });
    let report;
    try {
      report = await renderSweepReport(records, name, (file, content) => fs.writeFile(path.join(dir, file), content), { seedRole, cellIds });
    } catch (err) {
      if (err instanceof SeedRoleError) throw new UserError(`sweep ${name}: ${err.message}`);
      throw err;
    }
    io.stdout.write(report.markdown);
    info(io, `\nreport written to ${dir}/ (report.md, report.csv, report.json, asr_vs_acc.svg, der_by_defense.svg)`);
  });
}

export async function sweepReport(args: ParsedArgs, io: Io): Promise<number> {
  await writeReport(io, args.positionals[0], stringOption(args, 'out'));
  return 0;
}

export async function storeGc(args: ParsedArgs, io: Io): Promise<number> {
  const dryRun = flag(args, 'dry-run');
  await withStore(io, async (store) => {
    const { collectGarbage } = await import('../store/gc');
    const r = await collectGarbage(store, { dryRun, keepCheckpoints: !flag(args, 'drop-checkpoints') });
    const mb = (r.freedBytes / 2 ** 20).toFixed(1);
    if (dryRun) for (const o of r.unreferenced) io.stdout.write(`${o.sha256}  ${o.bytes}\n`);
    // the summary is the command's result, so it goes to stdout with the list (dry run) it sums up
    io.stdout.write(`${store.location}: ${r.referenced} referenced, ${r.unreferenced.length} unreferenced (${mb} MiB)${dryRun ? ' would be deleted (dry run)' : `, ${r.deleted} deleted`}\n`);
  });
  return 0;
}
