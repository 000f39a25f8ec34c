/** Every command's options and help text (parsing and --help come from these specs). */
import { stackDirOption, type CommandSpec, type OptionSpec } from './args';
import { sweepStartSpec, sweepResumeSpec, sweepStatusSpec, sweepCancelSpec, sweepReportSpec, storeGcSpec } from './sweep';
import { auditBriefSpec } from './audit';
import { storeExportSpec, storeImportSpec } from './storeBundle';

const attackSpec: CommandSpec = {
  name: 'attack',
  brief: 'list the attacks; preview a trigger as a PNG (ntml attack --help)',
  summary: 'Attack library tools.',
  options: [],
};

const defenseSpec: CommandSpec = {
  name: 'defense',
  brief: 'list the defenses with their defaults (ntml defense --help)',
  summary: 'Defense library tools.',
  options: [],
};

const dataSpec: CommandSpec = {
  name: 'data',
  brief: 'pack an image folder into an .ntds file; inspect a data set (ntml data --help)',
  summary: 'Data set tools.',
  options: [],
};

const address: OptionSpec = {
  name: 'address',
  value: 'HOST:PORT',
  help: 'Temporal frontend to use (default: $NTML_TEMPORAL_ADDRESS)',
};
const namespace: OptionSpec = { name: 'namespace', value: 'NS', help: 'Temporal namespace (default: $NTML_NAMESPACE or "default")' };
const out: OptionSpec = {
  name: 'out',
  value: 'DIR',
  help: 'where report.md, report.json and model/ are written\n(default: runs/<run id>/)',
};
const stackDir: OptionSpec = { name: 'dir', value: 'DIR', help: 'stack state folder (same as --stack-dir)' };

const ADDRESS_RULES = `Which Temporal server: --address, else $NTML_TEMPORAL_ADDRESS, else the stack started by
"ntml stack start" in .ntml/stack (its store settings are used too). The artifact store
comes from $NTML_STORE / $NTML_S3_* (or that stack).`;

export const purifyRun: CommandSpec = {
  name: 'purify',
  brief: 'purify a model with NT-ML: start the run, show progress, write the report',
  synopsis: ['ntml purify --config FILE [options]', 'ntml purify status|attach|cancel ID [options]'],
  summary: 'Purify a (possibly backdoored) classifier with NT-ML, as a Temporal workflow.',
  options: [
    { name: 'config', value: 'FILE', help: 'run configuration, YAML or JSON (see examples/demo.yaml)' },
    address,
    namespace,
    {
      name: 'local',
      help: 'run on an embedded stack: Temporal dev server + S3 server in\n.ntml/stack, workers in this process (the default when no address is set)',
    },
    { name: 'id', value: 'RUN_ID', help: 'workflow id (default: purify-<name or "run">-<timestamp>)' },
    { name: 'detach', help: 'print the run id and return; needs workers of their own (--address)' },
    out,
    stackDirOption,
  ],
  details: `The config is validated before anything starts; errors name each field (exit code 2).
Without --address and $NTML_TEMPORAL_ADDRESS (or with --local) the command starts the embedded
stack (or uses the one "ntml stack start" left running) and runs an orchestration and a training
worker in this process until the run ends; Ctrl-C stops the run and everything the command started.
With a remote server, Ctrl-C only stops watching: the run goes on ("ntml purify attach ID").

Config paths (data.path, locations, layersModel) are read by the workers: relative paths are
relative to the worker's working directory (this directory for embedded workers).
data: {format: auto} picks CIFAR-10 when $NTML_CIFAR10_DIR holds data_batch_1.bin
(a 2000-image class-stratified training subset unless trainSubset says otherwise),
else synthetic data. export.dir in the config overrides where model/ is written.

subcommands:
  ntml purify status ID     state, stage and epoch of a run; the results table once finished
  ntml purify attach ID     follow a run started earlier or elsewhere, then write its report
  ntml purify cancel ID     request cancellation of a run

exit codes: 0 done, 1 the run or a server failed, 2 bad command line or config, 130 interrupted`,
};

export const purifyStatus: CommandSpec = {
  name: 'purify status',
  brief: 'status, stage and epoch of a run; results once finished',
  summary: 'Show a run: workflow status, current stage and epoch, and the results table once it has finished.',
  positionals: [{ name: 'ID', help: 'the run (workflow) id printed by "ntml purify"' }],
  options: [address, namespace, stackDirOption],
  details: ADDRESS_RULES,
};

export const purifyAttach: CommandSpec = {
  name: 'purify attach',
  brief: 'follow a run started earlier or elsewhere, then write its report',
  summary: 'Follow the live progress of a run started earlier or elsewhere, then print and write its report.',
  positionals: [{ name: 'ID', help: 'the run (workflow) id' }],
  options: [address, namespace, out, stackDirOption],
  details: `${ADDRESS_RULES}\nThe run needs workers polling its server (this command starts none).`,
};

export const purifyCancel: CommandSpec = {
  name: 'purify cancel',
  brief: 'cancel a run',
  summary: 'Request cancellation of a run; the training stage stops at the next batch.',
  positionals: [{ name: 'ID', help: 'the run (workflow) id' }],
  options: [address, namespace, stackDirOption],
  details: ADDRESS_RULES,
};

export const stackStart: CommandSpec = {
  name: 'stack start',
  brief: 'start the local Temporal + S3 stack in the background',
  summary:
    'Start the local stack in the background: a Temporal dev server and an S3 server (versitygw) on 127.0.0.1.\nPrints `export NTML_...=...` lines for workers and other shells (eval "$(ntml stack start)").',
  options: [stackDir, stackDirOption, { name: 'ui-port', value: 'PORT', help: 'also serve the Temporal web UI on this port' }],
  details: 'Servers come from .tools/bin (bash infra/setup.sh). "ntml purify" uses this stack when it is running.',
};

export const stackStop: CommandSpec = {
  name: 'stack stop',
  brief: 'stop the local stack',
  summary: 'Stop the servers recorded in the stack folder (their data stays for the next start).',
  options: [stackDir, stackDirOption],
};

export const stackStatusSpec: CommandSpec = {
  name: 'stack status',
  brief: 'is the local stack running and healthy?',
  summary: 'Show whether the local stack is running and healthy (exit code 0 when it is, 1 otherwise).',
  options: [stackDir, stackDirOption, { name: 'json', help: 'print the status as JSON' }],
};

export const COMMANDS: Array<{ usage: string; spec: CommandSpec }> = [
  { usage: 'purify --config FILE [options]', spec: purifyRun },
  { usage: 'purify status ID', spec: purifyStatus },
  { usage: 'purify attach ID', spec: purifyAttach },
  { usage: 'purify cancel ID', spec: purifyCancel },
  { usage: 'stack start', spec: stackStart },
  { usage: 'stack stop', spec: stackStop },
  { usage: 'stack status', spec: stackStatusSpec },
  { usage: 'sweep start|resume --spec FILE', spec: sweepStartSpec },
  { usage: 'sweep status NAME', spec: sweepStatusSpec },
  { usage: 'sweep cancel NAME', spec: sweepCancelSpec },
  { usage: 'sweep report NAME', spec: sweepReportSpec },
  { usage: 'store gc [--dry-run]', spec: storeGcSpec },
  { usage: 'store export|import', spec: storeExportSpec },
  { usage: 'attack list|preview', spec: attackSpec },
  { usage: 'defense list', spec: defenseSpec },
  { usage: 'data pack|inspect', spec: dataSpec },
  { usage: 'audit run|schedule|history', spec: auditBriefSpec },
];

export const stackUsage = () => groupUsage('stack', [stackStart, stackStop, stackStatusSpec]);

/** `ntml <group> --help` for a command group: each subcommand's one-line brief. */
export function groupUsage(group: string, subs: CommandSpec[]): string {
  return [
    `usage: ntml ${group} ${subs.map((s) => s.name.slice(group.length + 1)).join('|')} [options]`,
    '',
    ...subs.map((s) => `  ntml ${s.name.padEnd(16)}${s.brief}`),
    '',
    `Run "ntml ${group} <subcommand> --help" for its options.`,
  ].join('\n');
}

export const sweepUsage = () => groupUsage('sweep', [sweepStartSpec, sweepResumeSpec, sweepStatusSpec, sweepCancelSpec, sweepReportSpec]);
export const storeUsage = () => groupUsage('store', [storeGcSpec, storeExportSpec, storeImportSpec]);

export function mainUsage(): string {
  const lines = [
    'usage: ntml <command> [options]',
    '',
    'NT-ML backdoor purification for image classifiers, run as durable Temporal workflows.',
    '',
    'commands:',
    ...COMMANDS.map((c) => `  ntml ${c.usage.padEnd(32)}${c.spec.brief}`),
    '',
    'Run "ntml <command> --help" for the options of a command, e.g. "ntml purify --help".',
    '',
    'examples:',
    '  ntml purify --config examples/demo.yaml          embedded stack, live progress, report in runs/',
    '  eval "$(ntml stack start)"                       shared local stack (then start workers: dist/workers/*.js)',
    '  ntml purify --config my.yaml --detach            start on $NTML_TEMPORAL_ADDRESS and return',
    '  ntml purify attach purify-demo-20250101-120000   follow it and fetch the report',
  ];
  return lines.join('\n');
}
