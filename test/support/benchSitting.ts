/**
 * bench/run-cpu.sh as a bench machine runs it, for the bench-state tests: its folders moved into
 * a test folder and the embedded stack of its own (as on another machine), none of the test run's.
 */
import { execFile } from 'node:child_process';
import * as path from 'node:path';

const REPO = path.resolve(__dirname, '..', '..', '..');

export interface CommandResult {
  code: number;
  /** stdout, then stderr */
  out: string;
}

/** The environment of a bench machine whose embedded stack lives in `stackDir`. */
function machineEnv(stackDir: string, extra: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, ...extra, NTML_STACK_DIR: stackDir };
  // the test run's own stack must not be used: the script starts the embedded one, as on a bench machine
  for (const k of Object.keys(env)) if (k.startsWith('NTML_S3_') || k === 'NTML_STORE' || k === 'NTML_TEMPORAL_ADDRESS' || k.startsWith('AWS_')) delete env[k];
  return env;
}

function run(file: string, args: string[], env: NodeJS.ProcessEnv): Promise<CommandResult> {
  return new Promise((resolve) => {
    execFile(file, args, { cwd: REPO, env, timeout: 600_000, maxBuffer: 32 * 2 ** 20 }, (err, stdout, stderr) => {
      const code = err ? (err as { code?: number }).code : 0;
      resolve({ code: typeof code === 'number' ? code : 1, out: `${stdout}\n${stderr}` });
    });
  });
}

/** A sitting of bench/run-cpu.sh on `specs`, with bench folders under `dir` (specs/, state/, results/). */
export function benchSitting(dir: string, stackDir: string, specs: string[], extraEnv: NodeJS.ProcessEnv = {}): Promise<CommandResult> {
  const folders = { BENCH_SPECS_DIR: path.join(dir, 'specs'), BENCH_STATE_DIR: path.join(dir, 'state'), BENCH_RESULTS_DIR: path.join(dir, 'results') };
  return run('bash', ['bench/run-cpu.sh', ...specs], machineEnv(stackDir, { ...folders, ...extraEnv }));
}

/** `bin/ntml ARGS` on the machine whose embedded stack lives in `stackDir`. */
export function ntmlOnMachine(stackDir: string, args: string[]): Promise<CommandResult> {
  return run(path.join(REPO, 'bin', 'ntml'), args, machineEnv(stackDir, {}));
}

/**
 * A ci-tier bench spec named `name`: one BadNets cell per defense of `defenses` (the grid's YAML
 * list) on 400 synthetic images, one training epoch, so a sitting takes seconds per cell.
 */
export function tinyBenchSpec(name: string, defenses: string): string {
  return `name: ${name}
base:
  mode: evaluation
  tier: ci
  data: { format: synthetic, trainSize: 400, testSize: 200 }
  cleanBudget: 50
  training: { epochs: 1 }
grid:
  attack: [{ name: badnets, target: 5 }]
  defense: ${defenses}
  seed: [1]
concurrency: 2
`;
}
