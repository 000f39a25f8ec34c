/**
 * ntml audit run | schedule create|list|describe|pause|unpause|trigger|backfill|delete | history
 * | digest | reference-set.
 * An audit request file (YAML or JSON) names the deployed model, the reference set and the
 * policy (schemas/audit.ts); it is validated here before any server is contacted.
 * Schedules are Temporal Schedules whose action starts the `audit` workflow.
 */
import { withStore } from './store';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import type { Client } from '@temporalio/client';
import { commandUsage, flag, intOption, stackDirOption, stringOption, type CommandSpec, type OptionSpec, type ParsedArgs } from './args';
import { readConfigFile } from './config';
import { UsageError, UserError, failureMessage } from './errors';
import { intervalText, timestamp } from './format';
import type { Io } from './purify';
import { parseAuditRequest, type AuditRequest } from '../schemas/audit';
import type { AuditHistoryRecord, AuditOutcome, AuditReport } from '../core/audit/report';
import type { AuditInput, AuditProgress } from '../workflows/contract';
import { cronProblem } from './cronExpression';

const address: OptionSpec = { name: 'address', value: 'HOST:PORT', help: 'Temporal frontend (default: $NTML_TEMPORAL_ADDRESS, else the stack of "ntml stack start")' };
const requestOption: OptionSpec = { name: 'request', value: 'FILE', help: 'audit request, YAML or JSON: modelId, model, referenceSet, policy\n(see docs/audits.md)' };
const overlapOption: OptionSpec = {
  name: 'overlap',
  value: 'POLICY',
  help: 'when an audit is still running: skip (default), buffer-one,\nbuffer-all, cancel-other, terminate-other, allow-all',
};
const scheduleId: CommandSpec['positionals'] = [{ name: 'SCHEDULE_ID', help: 'the schedule (default id at creation: audit-<modelId>)' }];

/** The verdict as the exit code of `audit run`, for alerts and cron jobs. */
export const VERDICT_EXIT = { clean: 0, suspicious: 3, backdoored: 4, changed: 5 } as const;

export const auditRunSpec: CommandSpec = {
  name: 'audit run',
  brief: 'audit a deployed model once: integrity, accuracy, known triggers, Neural Cleanse',
  summary: 'Run one audit of a deployed model as a Temporal workflow and write its report.',
  options: [
    requestOption,
    address,
    { name: 'id', value: 'AUDIT_ID', help: 'workflow id (default: audit-<modelId>-<timestamp>)' },
    { name: 'detach', help: 'print the audit id and return (needs --address and workers of their own)' },
    { name: 'out', value: 'DIR', help: 'where report.md, report.json and the trigger PNGs go\n(default: runs/audits/<audit id>/)' },
    stackDirOption,
  ],
  details: `Without --address and $NTML_TEMPORAL_ADDRESS the command starts the embedded stack (in --stack-dir)
with workers in this process. The report is also stored (artifact store) with a history record under
audits/<modelId>/history/ ("ntml audit history MODEL").

exit codes: 0 clean, 3 suspicious, 4 backdoored, 5 changed (the model's digest is not the pinned
one, or without a pin not the previous audit's), 1 the audit or a server failed, 2 bad command
line or request`,
};

export const auditScheduleCreateSpec: CommandSpec = {
  name: 'audit schedule create',
  brief: 'audit a model periodically (a Temporal Schedule)',
  summary: 'Create a Temporal Schedule that starts the audit workflow with this request at every interval (or cron time).',
  options: [
    requestOption,
    { name: 'every', value: 'DURATION', help: 'interval, e.g. 24h, 6h, 30m, 90s' },
    { name: 'cron', value: 'EXPR', help: 'cron expression instead of --every, e.g. "0 3 * * *"' },
    { name: 'id', value: 'SCHEDULE_ID', help: 'schedule id (default: audit-<modelId>)' },
    { name: 'catchup-window', value: 'DURATION', help: 'how late a missed audit may still run after an outage\n(default 1h; older ones are skipped: use backfill)' },
    overlapOption,
    { name: 'paused', help: 'create the schedule paused' },
    { name: 'note', value: 'TEXT', help: 'a note shown by describe' },
    address,
  ],
  details: `The schedule's workflows run on the orchestration queue ($NTML_ORCHESTRATION_TASK_QUEUE or
ntml-orchestration) with their checks on the training queue ($NTML_TRAINING_TASK_QUEUE or
ntml-training): long-running workers must serve them (dist/workers/*.js).`,
};

export const auditScheduleListSpec: CommandSpec = {
  name: 'audit schedule list',
  brief: 'the audit schedules on the server',
  summary: 'List the schedules whose action is an audit workflow.',
  options: [address, { name: 'json', help: 'print JSON' }],
};
export const auditScheduleDescribeSpec: CommandSpec = {
  name: 'audit schedule describe',
  brief: 'spec, policies, state, recent and next audits of a schedule',
  summary: 'Describe a schedule: its interval, overlap policy and catch-up window, whether it is paused, its recent and next audits.',
  positionals: scheduleId,
  options: [address, { name: 'json', help: 'print JSON' }],
};
export const auditSchedulePauseSpec: CommandSpec = {
  name: 'audit schedule pause',
  brief: 'stop starting audits (trigger still works)',
  summary: 'Pause a schedule.',
  positionals: scheduleId,
  options: [address, { name: 'note', value: 'TEXT', help: 'why (shown by describe)' }],
};
export const auditScheduleUnpauseSpec: CommandSpec = {
  name: 'audit schedule unpause',
  brief: 'resume a paused schedule',
  summary: 'Unpause a schedule.',
  positionals: scheduleId,
  options: [address, { name: 'note', value: 'TEXT', help: 'a note shown by describe' }],
};
export const auditScheduleTriggerSpec: CommandSpec = {
  name: 'audit schedule trigger',
  brief: 'start an audit of the schedule now',
  summary: 'Start one audit of the schedule now (also when it is paused); skipped under SKIP if one is running.',
  positionals: scheduleId,
  options: [address, overlapOption],
};
export const auditScheduleBackfillSpec: CommandSpec = {
  name: 'audit schedule backfill',
  brief: 'run the audits a time range should have had',
  summary: 'Take the actions the schedule would have taken between --start and --end, now.',
  positionals: scheduleId,
  options: [
    { name: 'start', value: 'TIME', help: 'ISO time, e.g. 2025-01-01T00:00:00Z' },
    { name: 'end', value: 'TIME', help: 'ISO time' },
    {
      name: 'overlap',
      value: 'POLICY',
      help: 'buffer-all (default: every slot runs, one after another), allow-all\n(all at once), or skip, buffer-one, ... (slots due while one runs are skipped)',
    },
    address,
  ],
  details: 'Prints how many audits the range holds and how many the overlap policy will run.',
};
export const auditScheduleDeleteSpec: CommandSpec = {
  name: 'audit schedule delete',
  brief: 'delete a schedule (its past audits stay in the history)',
  summary: 'Delete a schedule. Running audits finish; the history in the store is kept.',
  positionals: scheduleId,
  options: [address],
};
export const auditDigestSpec: CommandSpec = {
  name: 'audit digest',
  brief: "the model digest an audit records (to pin as policy.integrity.expectedDigest)",
  summary: "Print the digest of the request's deployed model, computed as the audit computes it (no server needed).",
  options: [requestOption, { name: 'json', help: 'also list the files and their sha256' }],
  details: `Pin the approved model with
  policy:
    integrity: { expectedDigest: <this digest> }
and every audit of another model (one changed byte in weights.bin is enough) gets the verdict
"changed" and exit code 5.`,
};
export const auditReferenceSetSpec: CommandSpec = {
  name: 'audit reference-set',
  brief: 'make a reference set from a known data set (synthetic or CIFAR-10)',
  summary: 'Write a clean, class-balanced reference set as an ntml data set file for audit requests (referenceSet).',
  options: [
    { name: 'data', value: 'SOURCE', help: 'synthetic (the generator of the demo and the ci tier) or cifar10\n(a stratified subset of the test batch)' },
    { name: 'out', value: 'FILE', help: 'where to write it, e.g. reference.ntds' },
    { name: 'size', value: 'N', help: 'images (default 500)' },
    { name: 'seed', value: 'N', help: 'which images (default 0)' },
    { name: 'path', value: 'DIR', help: 'cifar-10-batches-bin folder (default: $NTML_CIFAR10_DIR)' },
  ],
};
export const auditHistorySpec: CommandSpec = {
  name: 'audit history',
  brief: 'past verdicts of a model, oldest first',
  summary: 'List the recorded audits of a model id from the artifact store (no Temporal server needed).',
  positionals: [{ name: 'MODEL', help: 'the modelId of the audit requests' }],
  options: [
    { name: 'limit', value: 'N', help: 'only the last N audits' },
    { name: 'json', help: 'print the records as JSON' },
    stackDirOption,
  ],
};

/** `ntml audit schedule ACTION`: the spec of each action (registered in cli/tree.ts). */
export const SCHEDULE_SPECS: Record<string, CommandSpec> = {
  create: auditScheduleCreateSpec,
  list: auditScheduleListSpec,
  describe: auditScheduleDescribeSpec,
  pause: auditSchedulePauseSpec,
  unpause: auditScheduleUnpauseSpec,
  trigger: auditScheduleTriggerSpec,
  backfill: auditScheduleBackfillSpec,
  delete: auditScheduleDeleteSpec,
};

/** The `ntml --help` line. */
export const auditBriefSpec: CommandSpec = {
  name: 'audit',
  brief: 'audit deployed models once or on a schedule; list past verdicts',
  summary: 'Audits of deployed models.',
  options: [],
};

export function auditUsage(): string {
  return [
    'usage: ntml audit run --request FILE [options]',
    '       ntml audit schedule create|list|describe|pause|unpause|trigger|backfill|delete ...',
    '       ntml audit history MODEL',
    '       ntml audit digest --request FILE',
    '       ntml audit reference-set --data synthetic|cifar10 --out FILE',
    '',
    ...[auditRunSpec, ...Object.values(SCHEDULE_SPECS), auditHistorySpec, auditDigestSpec, auditReferenceSetSpec].map((s) => `  ntml ${s.name.padEnd(26)}${s.brief}`),
    '',
    'Run "ntml audit <subcommand> --help" for its options; docs/audits.md explains requests and policies.',
  ].join('\n');
}

const info = (io: Io, line: string) => io.stderr.write(`${line}\n`);

function loadRequest(args: ParsedArgs, spec: CommandSpec): { raw: unknown; request: AuditRequest } {
  const file = stringOption(args, 'request');
  if (!file) throw new UsageError('missing --request FILE (an audit request: modelId, model, referenceSet, policy)', commandUsage(spec, true));
  const raw = readConfigFile(file);
  // a ConfigError names every bad field; main.ts reports it with exit code 2
  return { raw, request: parseAuditRequest(raw, file) };
}

/** Task queues: a deployment's own names (as its workers use them) or the defaults. */
async function queues(remote: boolean) {
  const { ORCHESTRATION_TASK_QUEUE, TRAINING_TASK_QUEUE } = await import('../workers/createWorkers');
  const orchestration = (remote && process.env.NTML_ORCHESTRATION_TASK_QUEUE?.trim()) || ORCHESTRATION_TASK_QUEUE;
  const training = (remote && process.env.NTML_TRAINING_TASK_QUEUE?.trim()) || TRAINING_TASK_QUEUE;
  return { orchestration, options: training === TRAINING_TASK_QUEUE ? undefined : { trainingTaskQueue: training } };
}

// --- ntml audit run --------------------------------------------------------------------

export async function auditRun(args: ParsedArgs, io: Io): Promise<number> {
  const { raw, request } = loadRequest(args, auditRunSpec);
  const auditId = stringOption(args, 'id') ?? `audit-${request.modelId}-${timestamp()}`;
  if (!/^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$/.test(auditId)) throw new UsageError(`audit id "${auditId}" must be letters, digits, ".", "_", ":" and "-"`);
  const detach = flag(args, 'detach');
  // one way to connect (cli/connection.ts): workers of this process on a local or embedded stack
  const { connect, resolveSetup, queueOptions, missingWorkers, aborted } = await import('./connection');
  if (detach && resolveSetup({ address: stringOption(args, 'address') }).setup !== 'remote') {
    throw new UsageError('--detach needs --address or $NTML_TEMPORAL_ADDRESS (the embedded workers stop with this command)');
  }
  const c = await connect({ address: stringOption(args, 'address'), namespace: stringOption(args, 'namespace'), needsWorkers: true, log: (l) => info(io, l), signal: io.signal });
  const { client, embedded } = c;
  try {
    const q = { orchestration: c.queues.orchestration, options: queueOptions(c.queues) };
    const handle = await client.workflow
      .start('audit', {
        taskQueue: q.orchestration,
        workflowId: auditId,
        workflowIdReusePolicy: 'REJECT_DUPLICATE',
        args: [{ request: raw, options: q.options } satisfies AuditInput],
      })
      .catch(async (err) => {
        const { WorkflowExecutionAlreadyStartedError } = await import('@temporalio/client');
        if (err instanceof WorkflowExecutionAlreadyStartedError) throw new UsageError(`an audit with id ${auditId} already exists; pass another --id`);
        throw new UserError(`cannot start the audit: ${failureMessage(err)}`);
      });
    info(io, `audit ${auditId} of ${request.modelId} started on ${c.address} (from ${c.source})`);
    const missing = await missingWorkers(c);
    if (missing) info(io, `warning: ${missing}`);
    if (detach) {
      io.stdout.write(`${auditId}\n`);
      return 0;
    }
    let last = '';
    // one query at a time (the sweep's rule): the worker in this process answers between steps
    const { pollInTurn } = await import('./progress');
    const poll = pollInTurn(async () => {
      try {
        // under c.calls: a query still pending is cancelled before the connection closes
        const p = await c.calls.run(() => handle.query<AuditProgress>('progress'));
        if (p.stage !== last && !c.calls.signal.aborted) info(io, `  ${(last = p.stage)} ...`);
      } catch {
        // between workflow tasks: the next poll answers
      }
    }, 1000);
    let outcome: AuditOutcome | 'aborted';
    try {
      const { scopedResult } = await import('./callScope');
      const result = scopedResult<AuditOutcome>(c.calls, client, handle);
      result.catch(() => undefined);
      outcome = await Promise.race([result, aborted(io.signal), ...(embedded ? [embedded.workersFailed] : [])]);
    } catch (err) {
      if (io.signal.aborted) return 130;
      throw new UserError(`audit ${auditId} failed: ${failureMessage(err)}`);
    } finally {
      poll.stop();
    }
    if (outcome === 'aborted') {
      info(io, embedded ? `audit ${auditId}: stopped with this command's workers` : `audit ${auditId}: stopped watching; it goes on on ${c.address}`);
      return 130;
    }
    const dir = stringOption(args, 'out') ?? path.join('runs', 'audits', auditId);
    const markdown = await writeAuditOutputs(outcome, dir);
    io.stdout.write(`${markdown.trimEnd()}\n`);
    info(io, `\nverdict: ${outcome.verdict}; report in ${dir}/ (report.md, report.json, trigger-class-*.png)`);
    return VERDICT_EXIT[outcome.verdict];
  } finally {
    await c.close({ fast: io.signal.aborted && c.setup === 'embedded' });
  }
}

/** report.md, report.json and the reversed-trigger PNGs from the store into `dir`; returns the Markdown. */
export async function writeAuditOutputs(outcome: AuditOutcome, dir: string): Promise<string> {
  const { storeFromEnv } = await import('../store');
  const { triggerImageName } = await import('../core/audit/report');
  const store = storeFromEnv();
  const markdown = Buffer.from(await store.get(outcome.markdown)).toString('utf8');
  const report = JSON.parse(Buffer.from(await store.get(outcome.report)).toString('utf8')) as AuditReport;
  await fs.mkdir(dir, { recursive: true });
  await fs.writeFile(path.join(dir, 'report.md'), markdown);
  await fs.writeFile(path.join(dir, 'report.json'), `${JSON.stringify(report, null, 2)}\n`);
  for (const c of report.neuralCleanse?.classes ?? []) await fs.writeFile(path.join(dir, triggerImageName(c.targetClass)), await store.get(c.image));
  return markdown;
}

// --- ntml audit schedule ... -----------------------------------------------------------

/** "90s", "30m", "24h", "7d" -> milliseconds. */
export function parseDuration(value: string, option: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(value.trim());
  if (!m) throw new UsageError(`--${option} must be a duration such as 90s, 30m, 24h or 7d, got "${value}"`);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as 'ms' | 's' | 'm' | 'h' | 'd'];
  const ms = Number(m[1]) * unit;
  if (ms < 1000) throw new UsageError(`--${option} must be at least 1s, got "${value}"`);
  return ms;
}

const OVERLAP = {
  skip: 'SKIP',
  'buffer-one': 'BUFFER_ONE',
  'buffer-all': 'BUFFER_ALL',
  'cancel-other': 'CANCEL_OTHER',
  'terminate-other': 'TERMINATE_OTHER',
  'allow-all': 'ALLOW_ALL',
} as const;

function overlapOf(args: ParsedArgs): (typeof OVERLAP)[keyof typeof OVERLAP] | undefined {
  const v = stringOption(args, 'overlap');
  if (v === undefined) return undefined;
  const policy = OVERLAP[v as keyof typeof OVERLAP];
  if (!policy) throw new UsageError(`--overlap must be one of ${Object.keys(OVERLAP).join(', ')}, got "${v}"`);
  return policy;
}

function parseTime(value: string | undefined, option: string): Date {
  if (!value) throw new UsageError(`missing --${option} TIME (ISO 8601, e.g. 2025-01-01T00:00:00Z)`);
  const d = new Date(value);
  if (Number.isNaN(d.getTime())) throw new UsageError(`--${option} is not a time: "${value}" (ISO 8601, e.g. 2025-01-01T00:00:00Z)`);
  return d;
}

async function scheduleClient(args: ParsedArgs): Promise<Client> {
  const { connectClient, requireTarget, namespaceFrom } = await import('./temporal');
  return (await connectClient(requireTarget(stringOption(args, 'address')), namespaceFrom(undefined))).client;
}

export async function scheduleCommand(action: string, args: ParsedArgs, io: Io): Promise<number> {
  // a bad command line fails before the server is contacted
  const created = action === 'create' ? scheduleOptions(args) : undefined;
  // a backfill puts every slot of the range due at once: under the schedule's SKIP all but one
  // would be skipped, so by default they are buffered and run one after another
  const backfill =
    action === 'backfill'
      ? { start: parseTime(stringOption(args, 'start'), 'start'), end: parseTime(stringOption(args, 'end'), 'end'), overlap: overlapOf(args) ?? 'BUFFER_ALL' }
      : undefined;
  if (backfill && backfill.end <= backfill.start) throw new UsageError('--end must be after --start');
  const triggerOverlap = action === 'trigger' ? overlapOf(args) : undefined;
  const client = await scheduleClient(args);
  const id = args.positionals[0];
  const { ScheduleNotFoundError } = await import('@temporalio/client');
  try {
    switch (action) {
      case 'create': {
        const { raw, request, spec, catchupWindow, overlap, cron } = created!;
        const note = stringOption(args, 'note');
        const scheduleIdValue = stringOption(args, 'id') ?? `audit-${request.modelId}`;
        const q = await queues(true);
        await client.schedule
          .create({
            scheduleId: scheduleIdValue,
            spec,
            action: {
              type: 'startWorkflow',
              workflowType: 'audit',
              workflowId: `audit-${request.modelId}`,
              taskQueue: q.orchestration,
              args: [{ request: raw, options: q.options } satisfies AuditInput],
            },
            policies: { overlap, catchupWindow },
            state: { paused: flag(args, 'paused'), note },
            // the server keeps a cron only as calendar entries, and pause/unpause overwrite the
            // note: the memo keeps both as given, for describe and for unpause
            memo: { modelId: request.modelId, ...(cron ? { cron } : {}), ...(note ? { note } : {}) },
          })
          .catch(async (err) => {
            const { ScheduleAlreadyRunning } = await import('@temporalio/client');
            if (err instanceof ScheduleAlreadyRunning) throw new UsageError(`a schedule with id ${scheduleIdValue} already exists (describe, delete, or pass --id)`);
            throw err;
          });
        io.stdout.write(`${scheduleIdValue}\n`);
        info(io, `schedule ${scheduleIdValue}: audit of ${request.modelId} ${describeSpec(spec)}, overlap ${overlap}, catch-up window ${intervalText(catchupWindow)}${flag(args, 'paused') ? ', paused' : ''}`);
        return 0;
      }
      case 'list': {
        const rows: Array<{ id: string; paused: boolean; next?: string; recent?: string; verdict?: string; note?: string }> = [];
        for await (const s of client.schedule.list()) {
          if (s.action?.type !== 'startWorkflow' || s.action.workflowType !== 'audit') continue;
          const last = s.info?.recentActions?.at(-1);
          rows.push({
            id: s.scheduleId,
            paused: s.state.paused,
            // a paused schedule starts nothing: the server's next times would only mislead
            next: s.state.paused ? undefined : s.info?.nextActionTimes?.[0]?.toISOString(),
            recent: last?.takenAt?.toISOString(),
            verdict: last ? await auditState(client, last.action.workflow) : undefined,
            note: s.state.note,
          });
        }
        if (flag(args, 'json')) io.stdout.write(`${JSON.stringify(rows, null, 2)}\n`);
        else if (!rows.length) info(io, 'no audit schedules');
        else {
          for (const r of rows) {
            const last = r.recent ? `${r.recent} ${r.verdict}` : '-';
            io.stdout.write(`${r.id}  ${r.paused ? 'paused ' : 'active '} next ${r.next ?? '-'}  last ${last}${r.note ? `  (${r.note})` : ''}\n`);
          }
        }
        return 0;
      }
      case 'describe': {
        const d = await client.schedule.getHandle(id).describe();
        const cron = typeof d.memo?.cron === 'string' ? d.memo.cron : undefined;
        const next = d.state.paused ? [] : d.info.nextActionTimes.slice(0, 3).map((t) => t.toISOString());
        const recent = await Promise.all(
          d.info.recentActions.slice(-10).map(async (a) => ({
            takenAt: a.takenAt.toISOString(),
            workflowId: a.action.workflow.workflowId,
            verdict: await auditState(client, a.action.workflow),
          })),
        );
        if (flag(args, 'json')) {
          const { scheduleId, spec, policies, state, action, memo } = d;
          io.stdout.write(`${JSON.stringify({ scheduleId, when: describeSpec(spec, cron), spec, policies, state, info: { ...d.info, nextActionTimes: next }, recent, action, memo }, null, 2)}\n`);
          return 0;
        }
        const lines = [
          `schedule   ${d.scheduleId}${d.state.paused ? '  PAUSED' : ''}${d.state.note ? `  (${d.state.note})` : ''}`,
          `when       ${describeSpec(d.spec, cron)}`,
          `policies   overlap ${d.policies.overlap}, catch-up window ${intervalText(d.policies.catchupWindow)}`,
          `audits     ${d.info.numActionsTaken} started, ${d.info.numActionsSkippedOverlap} skipped (overlap), ${d.info.runningActions.length} running`,
          `next       ${d.state.paused ? '- (paused: no audit starts until unpause; trigger still works)' : next.join(', ') || '-'}`,
          'recent:',
          ...recent.map((a) => `  ${a.takenAt}  ${a.verdict.padEnd(10)}  ${a.workflowId}`),
        ];
        io.stdout.write(`${lines.join('\n')}\n`);
        return 0;
      }
      case 'pause':
        // an empty note is no note: Temporal reads an empty pause/unpause string as "leave the state alone"
        await client.schedule.getHandle(id).pause(stringOption(args, 'note') || 'paused with ntml audit schedule pause');
        info(io, `schedule ${id} paused`);
        return 0;
      case 'unpause': {
        // without --note the schedule gets back the note it was created with (pause replaced it);
        // never an empty one: the server takes an empty unpause note for "no change" and stays paused
        const handle = client.schedule.getHandle(id);
        const memo = (await handle.describe()).memo;
        const createdNote = typeof memo?.note === 'string' ? memo.note : '';
        await handle.unpause(stringOption(args, 'note') || createdNote || 'unpaused with ntml audit schedule unpause');
        info(io, `schedule ${id} unpaused`);
        return 0;
      }
      case 'trigger':
        await client.schedule.getHandle(id).trigger(triggerOverlap);
        info(io, `schedule ${id}: audit requested now (${triggerOverlap ? `overlap ${triggerOverlap}` : "the schedule's overlap policy applies: under SKIP it is skipped while an audit runs"})`);
        return 0;
      case 'backfill': {
        const { start, end, overlap } = backfill!;
        const slots = await matchingTimes(client, id, start, end);
        await client.schedule.getHandle(id).backfill({ start, end, overlap });
        io.stdout.write(`${slots.length}\n`);
        info(io, `schedule ${id}: backfill of ${start.toISOString()} .. ${end.toISOString()}: ${backfillSummary(slots.length, overlap)}`);
        return 0;
      }
      case 'delete':
        await client.schedule.getHandle(id).delete();
        info(io, `schedule ${id} deleted (its audit history stays in the store)`);
        return 0;
    }
    throw new UsageError(`unknown audit schedule subcommand "${action}"`, auditUsage());
  } catch (err) {
    if (err instanceof ScheduleNotFoundError) throw new UserError(`no schedule ${id} on this server ("ntml audit schedule list" shows them)`);
    throw err;
  } finally {
    await client.connection.close();
  }
}

/** What the overlap policy does with `n` backfilled slots that all come due at once. */
export function backfillSummary(n: number, overlap: string): string {
  if (n === 0) return 'the schedule had no audit due in this range: nothing to run';
  const audits = `${n} audit${n === 1 ? '' : 's'}`;
  switch (overlap) {
    case 'BUFFER_ALL':
      return `${audits} due; all ${n} run, one after another (overlap BUFFER_ALL)`;
    case 'ALLOW_ALL':
      return `${audits} due; all ${n} start at once (overlap ALLOW_ALL)`;
    case 'BUFFER_ONE':
      return `${audits} due; overlap BUFFER_ONE runs ${Math.min(n, 2)} and skips ${Math.max(0, n - 2)} (only one waits while another runs; --overlap buffer-all runs every slot)`;
    default:
      return `${audits} due; overlap ${overlap} runs 1 and skips ${n - 1} (they come due while the first runs; --overlap buffer-all runs every slot)`;
  }
}

/** The times the schedule's spec matches in [start, end], as the server computes them. */
async function matchingTimes(client: Client, scheduleId: string, start: Date, end: Date): Promise<Date[]> {
  const { msToTs, tsToDate } = await import('@temporalio/common/lib/time');
  const { namespaceFrom } = await import('./temporal');
  const r = await client.workflowService.listScheduleMatchingTimes({
    namespace: namespaceFrom(undefined),
    scheduleId,
    // the server lists the times after startTime, but a backfill also runs a slot at start itself
    startTime: msToTs(start.getTime() - 1),
    endTime: msToTs(end.getTime()),
  });
  return (r.startTime ?? []).map((t) => tsToDate(t));
}

/** An audit the schedule started: its verdict when completed, else its state (running, failed, ...). */
async function auditState(client: Client, workflow: { workflowId: string; firstExecutionRunId: string }): Promise<string> {
  try {
    const handle = client.workflow.getHandle(workflow.workflowId, workflow.firstExecutionRunId);
    const { status } = await handle.describe();
    if (status.name !== 'COMPLETED') return status.name.toLowerCase().replace(/_/g, '-');
    return ((await handle.result()) as AuditOutcome).verdict;
  } catch {
    // deleted by retention, or another namespace's: the time and id still say something
    return '?';
  }
}

function scheduleOptions(args: ParsedArgs) {
  const { raw, request } = loadRequest(args, auditScheduleCreateSpec);
  const every = stringOption(args, 'every');
  const cron = stringOption(args, 'cron');
  if ((every === undefined) === (cron === undefined)) throw new UsageError('give exactly one of --every DURATION or --cron EXPR', commandUsage(auditScheduleCreateSpec, true));
  const cronIssue = cron === undefined ? undefined : cronProblem(cron);
  if (cronIssue) {
    const said = cronIssue.startsWith('needs') ? `--cron ${cronIssue}: "${cron}"` : `--cron "${cron}": ${cronIssue}`;
    throw new UsageError(`${said} (e.g. "0 3 * * *" is 03:00 every day)`);
  }
  const spec = every !== undefined ? { intervals: [{ every: parseDuration(every, 'every') }] } : { cronExpressions: [cron!.trim()] };
  const catchupWindow = parseDuration(stringOption(args, 'catchup-window') ?? '1h', 'catchup-window');
  return { raw, request, spec, catchupWindow, overlap: overlapOf(args) ?? 'SKIP', cron: cron?.trim() };
}

/**
 * The schedule's times in words. The server returns a cron expression as calendar entries, so
 * `cron` (the expression as created, kept in the memo) names it; calendars of schedules made
 * elsewhere are spelled out field by field.
 */
export function describeSpec(spec: { intervals?: Array<{ every: unknown }>; cronExpressions?: string[]; calendars?: unknown[] }, cron?: string): string {
  const parts: string[] = [];
  for (const i of spec.intervals ?? []) parts.push(`every ${typeof i.every === 'number' ? intervalText(i.every) : String(i.every)}`);
  for (const c of spec.cronExpressions ?? []) parts.push(`cron "${c}"`);
  if (cron !== undefined && !spec.cronExpressions?.length) parts.push(`cron "${cron}"`);
  else if (spec.calendars?.length) parts.push(...spec.calendars.map((c) => `calendar ${describeCalendar(c as Record<string, unknown>)}`));
  return parts.join(', ') || '(no times)';
}

/** A calendar entry as "hour 3, minute 0, ..." with ranges and steps: `{start, end, step}` -> "1-5/2". */
function describeCalendar(c: Record<string, unknown>): string {
  const fields = ['month', 'dayOfMonth', 'dayOfWeek', 'hour', 'minute', 'second'];
  const range = (r: unknown): string => {
    if (typeof r === 'string' || typeof r === 'number') return String(r);
    const { start, end, step } = r as { start: unknown; end?: unknown; step?: number };
    return `${start}${end !== undefined && end !== start ? `-${end}` : ''}${step && step > 1 ? `/${step}` : ''}`;
  };
  const parts = fields.flatMap((f) => {
    const v = c[f];
    if (v === undefined || (Array.isArray(v) && v.length === 0)) return [];
    return [`${f} ${(Array.isArray(v) ? v : [v]).map(range).join(',')}`];
  });
  return parts.join(', ') || 'every second';
}

// --- ntml audit history MODEL ----------------------------------------------------------

export async function auditHistory(args: ParsedArgs, io: Io): Promise<number> {
  const modelId = args.positionals[0];
  const limitText = stringOption(args, 'limit');
  const limit = limitText === undefined ? undefined : Number(limitText);
  if (limit !== undefined && (!Number.isInteger(limit) || limit < 1)) throw new UsageError(`--limit must be a positive integer, got "${limitText}"`);
  const { ModelId } = await import('../schemas/audit');
  if (!ModelId.safeParse(modelId).success) throw new UsageError(`"${modelId}" is not a model id (letters, digits, ".", "_", "-")`);
  const records = await withStore(io, async (store) => {
    const { readHistory } = await import('../core/audit/history');
    return readHistory(store, modelId);
  });
  const shown = limit ? records.slice(-limit) : records;
  if (flag(args, 'json')) {
    io.stdout.write(`${JSON.stringify(shown, null, 2)}\n`);
    return 0;
  }
  if (!records.length) {
    info(io, `no recorded audits of ${modelId}`);
    return 0;
  }
  io.stdout.write(`${historyTable(shown)}\n`);
  return 0;
}

export function historyTable(records: AuditHistoryRecord[]): string {
  const rows = [['started', 'verdict', 'model', 'accuracy', 'audit', 'why']];
  for (const r of records) {
    const model = r.digest ? `${r.digest.slice(0, 12)}${r.integrity === 'changed' ? ' CHANGED' : ''}` : '-';
    const why = r.status === 'failed' ? `failed: ${r.error?.split('\n')[0] ?? ''}` : (r.reasons?.[0] ?? '');
    rows.push([r.startedAt.replace(/\.\d+Z$/, 'Z'), r.status === 'failed' ? 'FAILED' : r.verdict!, model, r.accuracy === undefined ? '-' : r.accuracy.toFixed(1), r.auditId, why]);
  }
  const widths = rows[0].map((_, i) => (i === rows[0].length - 1 ? 0 : Math.max(...rows.map((r) => r[i].length))));
  return rows.map((r) => r.map((c, i) => (widths[i] ? c.padEnd(widths[i]) : c)).join('  ')).join('\n');
}


// --- ntml audit digest --request FILE ----------------------------------------------------

export async function auditDigest(args: ParsedArgs, io: Io): Promise<number> {
  const { request } = loadRequest(args, auditDigestSpec);
  const { deployedModelDigest, AuditModelError } = await import('../core/audit/deployedModel');
  const { s3OptionsFromEnv } = await import('../store');
  let result;
  try {
    result = await deployedModelDigest(request.model, s3OptionsFromEnv());
  } catch (err) {
    if (err instanceof AuditModelError) throw new UserError(err.message);
    throw err;
  }
  if (flag(args, 'json')) io.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  else io.stdout.write(`${result.digest}\n`);
  const pinned = request.policy.integrity.expectedDigest;
  if (pinned !== undefined) {
    info(io, pinned === result.digest ? 'matches policy.integrity.expectedDigest' : `differs from policy.integrity.expectedDigest ${pinned}: an audit would say "changed"`);
  } else {
    info(io, 'pin it in the request as  policy: { integrity: { expectedDigest: <digest> } }');
  }
  return 0;
}

// --- ntml audit reference-set --data synthetic|cifar10 --out FILE ---------------------------

export async function auditReferenceSet(args: ParsedArgs, io: Io): Promise<number> {
  const data = stringOption(args, 'data');
  if (data !== 'synthetic' && data !== 'cifar10') {
    throw new UsageError(`--data must be synthetic or cifar10, got ${data === undefined ? 'nothing' : `"${data}"`}`, commandUsage(auditReferenceSetSpec, true));
  }
  const out = stringOption(args, 'out');
  if (!out) throw new UsageError('missing --out FILE (e.g. reference.ntds)', commandUsage(auditReferenceSetSpec, true));
  const size = intOption(args, 'size', 500, 10, data === 'cifar10' ? 10_000 : 100_000);
  const seed = intOption(args, 'seed', 0, 0, 2 ** 31 - 1);
  const { syntheticReferenceSet, cifar10ReferenceSet } = await import('../core/audit/referenceSet');
  let set;
  if (data === 'synthetic') set = syntheticReferenceSet(size, seed);
  else {
    const { cifar10DirFromEnv } = await import('./config');
    const dir = stringOption(args, 'path') ?? cifar10DirFromEnv().dir;
    if (!dir) throw new UsageError(`--data cifar10 needs --path DIR (the cifar-10-batches-bin folder) or $NTML_CIFAR10_DIR (${cifar10DirFromEnv().why})`);
    set = await cifar10ReferenceSet(dir, size, seed);
  }
  const { encodeDataset } = await import('../core/data/codec');
  await fs.mkdir(path.dirname(path.resolve(out)), { recursive: true });
  await fs.writeFile(out, encodeDataset(set, { madeBy: 'ntml audit reference-set', data, size, seed }));
  const perClass = new Array<number>(set.numClasses).fill(0);
  for (const l of set.labels) perClass[l]++;
  io.stdout.write(`${out}\n`);
  info(
    io,
    `wrote ${out}: ${set.labels.length} images of ${set.name}, ${set.height}x${set.width}x${set.channels}, ` +
      `${set.numClasses} classes (${Math.min(...perClass)}-${Math.max(...perClass)} per class)\n` +
      `use it in an audit request as  referenceSet: { format: ntml, location: ${out} }`,
  );
  return 0;
}
