/**
 * ntml audit run | schedule create|list|describe|pause|unpause|trigger|backfill|delete | history.
 * An audit request file (YAML or JSON) names the deployed model, the reference set and the
 * policy (schemas/audit.ts); it is validated here before any server is contacted.
 * Schedules are Temporal Schedules whose action starts the `audit` workflow.
 */
import { withStore } from './store';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import type { Client } from '@temporalio/client';
import { commandUsage, flag, stringOption, type CommandSpec, type OptionSpec, type ParsedArgs } from './args';
import { readConfigFile } from './config';
import { UsageError, UserError, failureMessage } from './errors';
import { timestamp } from './format';
import type { Io } from './purify';
import { parseAuditRequest, type AuditRequest } from '../schemas/audit';
import type { AuditHistoryRecord, AuditOutcome, AuditReport } from '../core/audit/report';
import type { AuditInput, AuditProgress } from '../workflows/audit';

const address: OptionSpec = { name: 'address', value: 'HOST:PORT', help: 'Temporal frontend (default: $NTML_TEMPORAL_ADDRESS, else the stack of "ntml stack start")' };
const requestOption: OptionSpec = { name: 'request', value: 'FILE', help: 'audit request, YAML or JSON: modelId, model, referenceSet, policy\n(see docs/audits.md)' };
const overlapOption: OptionSpec = {
  name: 'overlap',
  value: 'POLICY',
  help: 'when an audit is still running: skip (default), buffer-one,\nbuffer-all, cancel-other, terminate-other, allow-all',
};
const scheduleId: CommandSpec['positionals'] = [{ name: 'SCHEDULE_ID', help: 'the schedule (default id at creation: audit-<modelId>)' }];

const VERDICT_EXIT = { clean: 0, suspicious: 3, backdoored: 4 } as const;

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
  ],
  details: `Without --address and $NTML_TEMPORAL_ADDRESS the command starts the embedded stack with workers
in this process. The report is also stored (artifact store) with a history record under
audits/<modelId>/history/ ("ntml audit history MODEL").

exit codes: 0 clean, 3 suspicious, 4 backdoored, 1 the audit or a server failed, 2 bad command line or request`,
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
    overlapOption,
    address,
  ],
};
export const auditScheduleDeleteSpec: CommandSpec = {
  name: 'audit schedule delete',
  brief: 'delete a schedule (its past audits stay in the history)',
  summary: 'Delete a schedule. Running audits finish; the history in the store is kept.',
  positionals: scheduleId,
  options: [address],
};
export const auditHistorySpec: CommandSpec = {
  name: 'audit history',
  brief: 'past verdicts of a model, oldest first',
  summary: 'List the recorded audits of a model id from the artifact store (no Temporal server needed).',
  positionals: [{ name: 'MODEL', help: 'the modelId of the audit requests' }],
  options: [
    { name: 'limit', value: 'N', help: 'only the last N audits' },
    { name: 'json', help: 'print the records as JSON' },
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
    '',
    ...[auditRunSpec, ...Object.values(SCHEDULE_SPECS), auditHistorySpec].map((s) => `  ntml ${s.name.padEnd(26)}${s.brief}`),
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
  const c = await connect({ address: stringOption(args, 'address'), namespace: stringOption(args, 'namespace'), needsWorkers: true, log: (l) => info(io, l) });
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
    const poll = setInterval(async () => {
      try {
        const p = await handle.query<AuditProgress>('progress');
        if (p.stage !== last) info(io, `  ${(last = p.stage)} ...`);
      } catch {
        // between workflow tasks: the next poll answers
      }
    }, 1000);
    let outcome: AuditOutcome | 'aborted';
    try {
      const result = handle.result() as Promise<AuditOutcome>;
      outcome = await Promise.race([result, aborted(io.signal), ...(embedded ? [embedded.workersFailed] : [])]);
    } catch (err) {
      if (io.signal.aborted) return 130;
      throw new UserError(`audit ${auditId} failed: ${failureMessage(err)}`);
    } finally {
      clearInterval(poll);
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
  const backfill =
    action === 'backfill' ? { start: parseTime(stringOption(args, 'start'), 'start'), end: parseTime(stringOption(args, 'end'), 'end'), overlap: overlapOf(args) } : undefined;
  if (backfill && backfill.end <= backfill.start) throw new UsageError('--end must be after --start');
  const triggerOverlap = action === 'trigger' ? overlapOf(args) : undefined;
  const client = await scheduleClient(args);
  const id = args.positionals[0];
  const { ScheduleNotFoundError } = await import('@temporalio/client');
  try {
    switch (action) {
      case 'create': {
        const { raw, request, spec, catchupWindow, overlap } = created!;
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
            state: { paused: flag(args, 'paused'), note: stringOption(args, 'note') },
            memo: { modelId: request.modelId },
          })
          .catch(async (err) => {
            const { ScheduleAlreadyRunning } = await import('@temporalio/client');
            if (err instanceof ScheduleAlreadyRunning) throw new UsageError(`a schedule with id ${scheduleIdValue} already exists (describe, delete, or pass --id)`);
            throw err;
          });
        io.stdout.write(`${scheduleIdValue}\n`);
        info(io, `schedule ${scheduleIdValue}: audit of ${request.modelId} ${describeSpec(spec)}, overlap ${overlap}, catch-up window ${catchupWindow / 1000} s${flag(args, 'paused') ? ', paused' : ''}`);
        return 0;
      }
      case 'list': {
        const rows: Array<{ id: string; paused: boolean; next?: string; recent?: string; note?: string }> = [];
        for await (const s of client.schedule.list()) {
          if (s.action?.type !== 'startWorkflow' || s.action.workflowType !== 'audit') continue;
          rows.push({
            id: s.scheduleId,
            paused: s.state.paused,
            next: s.info?.nextActionTimes?.[0]?.toISOString(),
            recent: s.info?.recentActions?.at(-1)?.takenAt?.toISOString(),
            note: s.state.note,
          });
        }
        if (flag(args, 'json')) io.stdout.write(`${JSON.stringify(rows, null, 2)}\n`);
        else if (!rows.length) info(io, 'no audit schedules');
        else for (const r of rows) io.stdout.write(`${r.id}  ${r.paused ? 'paused ' : 'active '} next ${r.next ?? '-'}  last ${r.recent ?? '-'}${r.note ? `  (${r.note})` : ''}\n`);
        return 0;
      }
      case 'describe': {
        const d = await client.schedule.getHandle(id).describe();
        if (flag(args, 'json')) {
          io.stdout.write(`${JSON.stringify({ scheduleId: d.scheduleId, spec: d.spec, policies: d.policies, state: d.state, info: d.info, action: d.action }, null, 2)}\n`);
          return 0;
        }
        const lines = [
          `schedule   ${d.scheduleId}${d.state.paused ? '  PAUSED' : ''}${d.state.note ? `  (${d.state.note})` : ''}`,
          `when       ${describeSpec(d.spec)}`,
          `policies   overlap ${d.policies.overlap}, catch-up window ${d.policies.catchupWindow / 1000} s`,
          `audits     ${d.info.numActionsTaken} started, ${d.info.numActionsSkippedOverlap} skipped (overlap), ${d.info.runningActions.length} running`,
          `next       ${d.info.nextActionTimes.slice(0, 3).map((t) => t.toISOString()).join(', ') || '-'}`,
          'recent:',
          ...d.info.recentActions.slice(-10).map((a) => `  ${a.takenAt.toISOString()}  ${a.action.workflow.workflowId}`),
        ];
        io.stdout.write(`${lines.join('\n')}\n`);
        return 0;
      }
      case 'pause':
        await client.schedule.getHandle(id).pause(stringOption(args, 'note') ?? 'paused with ntml audit schedule pause');
        info(io, `schedule ${id} paused`);
        return 0;
      case 'unpause':
        await client.schedule.getHandle(id).unpause(stringOption(args, 'note') ?? 'unpaused with ntml audit schedule unpause');
        info(io, `schedule ${id} unpaused`);
        return 0;
      case 'trigger':
        await client.schedule.getHandle(id).trigger(triggerOverlap);
        info(io, `schedule ${id}: audit requested now`);
        return 0;
      case 'backfill':
        await client.schedule.getHandle(id).backfill({ start: backfill!.start, end: backfill!.end, overlap: backfill!.overlap });
        info(io, `schedule ${id}: backfill of ${backfill!.start.toISOString()} .. ${backfill!.end.toISOString()} requested`);
        return 0;
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

function scheduleOptions(args: ParsedArgs) {
  const { raw, request } = loadRequest(args, auditScheduleCreateSpec);
  const every = stringOption(args, 'every');
  const cron = stringOption(args, 'cron');
  if ((every === undefined) === (cron === undefined)) throw new UsageError('give exactly one of --every DURATION or --cron EXPR', commandUsage(auditScheduleCreateSpec, true));
  const spec = every !== undefined ? { intervals: [{ every: parseDuration(every, 'every') }] } : { cronExpressions: [cron!] };
  const catchupWindow = parseDuration(stringOption(args, 'catchup-window') ?? '1h', 'catchup-window');
  return { raw, request, spec, catchupWindow, overlap: overlapOf(args) ?? 'SKIP' };
}

function describeSpec(spec: { intervals?: Array<{ every: unknown }>; cronExpressions?: string[]; calendars?: unknown[] }): string {
  const parts: string[] = [];
  for (const i of spec.intervals ?? []) parts.push(`every ${typeof i.every === 'number' ? `${i.every / 1000} s` : String(i.every)}`);
  for (const c of spec.cronExpressions ?? []) parts.push(`cron "${c}"`);
  if (!parts.length && spec.calendars?.length) parts.push(`${spec.calendars.length} calendar entr${spec.calendars.length === 1 ? 'y' : 'ies'}`);
  return parts.join(', ') || '(no times)';
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

