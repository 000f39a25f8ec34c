/** Every command's options and help text (parsing and --help come from these specs). */
import { stackDirOption, type CommandSpec, type OptionSpec } from './args';

/** `ntml attack list|preview` (here, not in cli/attack.ts, so that help loads no TensorFlow). */
export const attackList: CommandSpec = {
  name: 'attack list',
  brief: 'the available attacks: name, kind, defaults',
  summary: 'List the registered attacks with their kind (dirty-label, clean-label, training-controlled) and default config.',
  options: [],
};

export const attackPreview: CommandSpec = {
  name: 'attack preview',
  brief: 'write a PNG showing an attack\'s trigger on a few images',
  synopsis: [
    'ntml attack preview --attack NAME [--config FILE.yaml] [--data synthetic|cifar10:PATH] [--seed N] --out FILE.png',
    'ntml attack preview --run ID [--address HOST:PORT] [--namespace NS] --out FILE.png',
  ],
  summary:
    'Draw clean images, the same images with the test-time trigger, and their difference (x10) as a PNG grid;\n' +
    'with --run, the trigger a purify run recorded (learned ones too: Input-Aware, Narcissus) on its own test images.',
  options: [
    {
      name: 'run',
      value: 'ID',
      help: 'a purify run (workflow id): its attack, seed, poison record and test set,\nread from its Temporal history and the store (replaces --attack,\n--config, --data, --seed)',
    },
    { name: 'address', value: 'HOST:PORT', help: 'with --run: the Temporal server (default $NTML_TEMPORAL_ADDRESS,\nelse the local stack)' },
    { name: 'namespace', value: 'NS', help: 'with --run: the Temporal namespace (default $NTML_NAMESPACE or "default")' },
    { name: 'attack', value: 'NAME', help: 'the attack (see "ntml attack list"); optional when --config names it' },
    {
      name: 'config',
      value: 'FILE',
      help: 'attack config, YAML or JSON, e.g. "name: blended\\nalpha: 0.3"\n(a purify config works too: its `attack` section is used)',
    },
    { name: 'data', value: 'SOURCE', help: 'synthetic (default: the test split a purify run with --seed\ngenerates) or cifar10:PATH (the test_batch.bin in PATH)' },
    { name: 'seed', value: 'N', help: 'run seed (default 0); the attack seed is derived as in a purify\nrun with this seed, so seeded triggers (WaNet) match that run' },
    { name: 'count', value: 'N', help: 'number of images (columns), default 8' },
    { name: 'scale', value: 'N', help: 'nearest-neighbour magnification, default 4' },
    { name: 'out', value: 'FILE.png', help: 'where to write the PNG' },
  ],
  details:
    'Rows: clean images, triggered images, |triggered - clean| x 10 (clipped), for the first\nnon-target images of the data set (target class images are skipped, as in ASR).\n' +
    'From a run, learned triggers add what they are made of: Input-Aware the PATTERN G(x) and\nMASK m(x) of each image (from the stored generators), Narcissus the TRIGGER (its\nperturbation at mid-grey, +-linfRadius over the full range).',
};




const address: OptionSpec = {
  name: 'address',
  value: 'HOST:PORT',
  help: 'Temporal frontend (default: $NTML_TEMPORAL_ADDRESS, else the stack of "ntml stack start")',
};
const namespace: OptionSpec = { name: 'namespace', value: 'NS', help: 'Temporal namespace (default: $NTML_NAMESPACE or "default")' };
const out: OptionSpec = {
  name: 'out',
  value: 'DIR',
  help: 'where report.md, report.json and model/ are written\n(default: runs/<run id>/)',
};
const stackDir: OptionSpec = { name: 'dir', value: 'DIR', help: 'stack state folder (the same as --stack-dir)' };

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
    stackDirOption,
    {
      name: 'local',
      help: 'run on an embedded stack: Temporal dev server + S3 server in\nthe stack folder, workers in this process (the default when no\naddress is set)',
    },
    { name: 'id', value: 'RUN_ID', help: 'workflow id (default: purify-<name or "run">-<timestamp>)' },
    { name: 'detach', help: 'print the run id and return; needs workers of their own (--address)' },
    out,
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
  details: `${ADDRESS_RULES}\nOn the local stack this command runs workers for the run until it ends; on a remote server it\nsays within seconds when no worker polls the run's queues, and waits for the deployment's.`,
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
  options: [stackDir, stackDirOption, { name: 'ui-port', value: 'PORT', help: "serve Temporal's Web UI on this loopback port\n(default: a free port; the URL is printed)" }],
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

export const completionSpec: CommandSpec = {
  name: 'completion',
  brief: 'print a shell completion script (bash or zsh)',
  summary: 'Print a completion script for the ntml commands and their options, generated from the same command tree as the help.',
  positionals: [{ name: 'SHELL', help: 'bash or zsh' }],
  options: [],
  details: `bash:  source <(ntml completion bash)      (or save it in ~/.local/share/bash-completion/completions/ntml)
zsh:   source <(ntml completion zsh)       (in ~/.zshrc; it uses zsh's bashcompinit)`,
};
