/**
 * The command tree: every `ntml` command, as its path, the CommandSpec that declares its options
 * (cli/commands.ts and the command modules) and a lazily loaded handler. cli/program.ts builds
 * the parser, help and shell completion from this one list; a new command is one entry here.
 */
import type { CommandSpec, ParsedArgs } from './args';
import * as specs from './commands';
import { sweepStartSpec, sweepResumeSpec, sweepStatusSpec, sweepCancelSpec, sweepReportSpec, storeGcSpec } from './sweep';
import * as audit from './audit';
import { dataPack, dataInspect } from './data';
import { defenseList } from './defense';
import { storeExportSpec, storeImportSpec } from './storeBundle';
import { stackEnvSpec } from './stackEnv';

export interface CliIo {
  stdout: NodeJS.WriteStream;
  stderr: NodeJS.WriteStream;
  /** aborted on the first Ctrl-C */
  signal: AbortSignal;
}

export type Handler = (args: ParsedArgs, io: CliIo) => Promise<number>;

export interface Leaf {
  /** words after `ntml`, e.g. "purify status"; spec.name is the same */
  spec: CommandSpec;
  handler: () => Promise<Handler>;
  /** accepted, but not listed in help or completion (old spellings) */
  hidden?: boolean;
  /** loads TensorFlow anyway: load it first, without its native start-up notices (cli/quiet.ts) */
  tensorflow?: boolean;
}

export interface Group {
  /** e.g. "audit schedule" */
  name: string;
  brief: string;
  /** in `ntml --help`, one line for the whole group instead of a line per subcommand */
  folded?: string;
}

const purify = async () => import('./purify');
const stack = async () => import('./stack');
const sweep = async () => import('./sweep');

export const GROUPS: Group[] = [
  { name: 'purify', brief: specs.purifyRun.brief },
  { name: 'stack', brief: 'the local Temporal + S3 stack' },
  { name: 'sweep', brief: 'grids of purify runs with a concurrency cap' },
  { name: 'store', brief: 'the artifact store' },
  { name: 'audit', brief: audit.auditBriefSpec.brief, folded: 'audit run|schedule|history|digest|reference-set' },
  { name: 'audit schedule', brief: 'audits on a Temporal Schedule' },
  { name: 'attack', brief: 'the attack library', folded: 'attack list|preview' },
  { name: 'defense', brief: 'the defense library', folded: 'defense list' },
  { name: 'data', brief: 'data set files', folded: 'data pack|inspect' },
];

const scheduleAction = (action: string): (() => Promise<Handler>) => async () => (args, io) => audit.scheduleCommand(action, args, io);

export const LEAVES: Leaf[] = [
  // `ntml purify [options]` is the group's own action (spec.name "purify")
  { spec: specs.purifyRun, handler: async () => (await purify()).purifyRun, tensorflow: true },
  { spec: { ...specs.purifyRun, name: 'purify run' }, handler: async () => (await purify()).purifyRun, hidden: true, tensorflow: true },
  { spec: specs.purifyStatus, handler: async () => (await purify()).purifyStatus },
  { spec: specs.purifyAttach, handler: async () => (await purify()).purifyAttach, tensorflow: true },
  { spec: specs.purifyCancel, handler: async () => (await purify()).purifyCancel },
  { spec: specs.stackStart, handler: async () => (await stack()).stackStart },
  { spec: specs.stackStop, handler: async () => (await stack()).stackStop },
  { spec: specs.stackStatusSpec, handler: async () => (await stack()).stackStatusCmd },
  { spec: stackEnvSpec, handler: async () => (await import('./stackEnv')).stackEnv },
  { spec: sweepStartSpec, handler: async () => (await sweep()).sweepStart, tensorflow: true },
  { spec: sweepResumeSpec, handler: async () => (await sweep()).sweepStart, tensorflow: true },
  { spec: sweepStatusSpec, handler: async () => (await sweep()).sweepStatus },
  { spec: sweepCancelSpec, handler: async () => (await sweep()).sweepCancel },
  { spec: sweepReportSpec, handler: async () => (await sweep()).sweepReport },
  { spec: storeGcSpec, handler: async () => (await sweep()).storeGc },
  { spec: storeExportSpec, handler: async () => (await import('./storeBundle')).storeExport },
  { spec: storeImportSpec, handler: async () => (await import('./storeBundle')).storeImport },
  { spec: audit.auditRunSpec, handler: async () => audit.auditRun, tensorflow: true },
  ...Object.entries(audit.SCHEDULE_SPECS).map(([action, spec]) => ({ spec, handler: scheduleAction(action) })),
  { spec: audit.auditHistorySpec, handler: async () => audit.auditHistory },
  { spec: audit.auditDigestSpec, handler: async () => audit.auditDigest, tensorflow: true },
  { spec: audit.auditReferenceSetSpec, handler: async () => audit.auditReferenceSet, tensorflow: true },
  { spec: specs.attackList, handler: async () => (await import('./attack')).attackListCmd },
  { spec: specs.attackPreview, handler: async () => (await import('./attack')).attackPreviewCmd, tensorflow: true },
  { spec: defenseList, handler: async () => (await import('./defense')).defenseListCmd, tensorflow: true },
  { spec: dataPack, handler: async () => (await import('./data')).dataPackCmd, tensorflow: true },
  { spec: dataInspect, handler: async () => (await import('./data')).dataInspectCmd, tensorflow: true },
  { spec: specs.completionSpec, handler: async () => (await import('./completion')).completionCmd },
];
