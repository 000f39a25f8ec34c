/**
 * What the benchmarks share: the machine description they print and store, the PyTorch
 * reference environment (a virtual environment under ~/.cache/ntml/bench-venv with the torch
 * pinned in bench/reference/requirements.txt, created on first use), and a child process that
 * answers with one JSON line. Each configuration of a bench runs in its own child so that its
 * peak RSS is its own.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { tf, nativeTensorflowVersion, backendKind } from '../core/tf';
import { findRepoRoot } from '../store/repoRoot';

const root = findRepoRoot(__dirname) ?? process.cwd();
/** bench/reference: the PyTorch reference scripts and their requirements */
export const referenceDir = path.join(root, 'bench', 'reference');
const venv = path.join(os.homedir(), '.cache', 'ntml', 'bench-venv');
// the CPU-only wheels of the pinned version; where unreachable, pip's default index (which
// serves the same version as a CUDA build: larger, and just as CPU-bound here)
const TORCH_CPU_INDEX = 'https://download.pytorch.org/whl/cpu';

export const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

export function machine(threads: number) {
  const cpus = os.cpus();
  return {
    cpuModel: cpus[0]?.model.trim() ?? 'unknown',
    logicalCores: cpus.length,
    availableParallelism: os.availableParallelism(),
    threads,
    totalMemoryGiB: Number((os.totalmem() / 1024 ** 3).toFixed(1)),
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    node: process.version,
    tfjs: tf.version.tfjs,
    tensorflow: nativeTensorflowVersion(),
    backend: `${backendKind} (${tf.getBackend()})`,
    oneDNN: process.env.TF_ENABLE_ONEDNN_OPTS ?? 'default',
    fastPath: process.env.NTML_FAST_PATH ?? 'default (on)',
  };
}
export type Machine = ReturnType<typeof machine>;

/** TensorFlow's thread pools for a child process: intra-op and inter-op both `threads`. */
export function threadEnv(threads: number): NodeJS.ProcessEnv {
  return { TF_NUM_INTRAOP_THREADS: String(threads), TF_NUM_INTEROP_THREADS: String(threads) };
}

function pinnedTorch(): string {
  const m = /^torch==(\S+)/m.exec(readFileSync(path.join(referenceDir, 'requirements.txt'), 'utf8'));
  if (!m) throw new Error('bench/reference/requirements.txt pins no torch version');
  return m[1];
}

/** The venv's python with the pinned torch installed (created on first use). */
export function pytorchPython(): string {
  const python = path.join(venv, 'bin', 'python');
  const want = pinnedTorch();
  const installed = () =>
    existsSync(python) &&
    spawnSync(python, ['-c', 'import torch, sys; sys.stdout.write(torch.__version__.split("+")[0])'], { encoding: 'utf8' }).stdout === want;
  if (installed()) return python;
  const run = (cmd: string, args: string[]) => spawnSync(cmd, args, { stdio: 'inherit' }).status === 0;
  if (!existsSync(python)) {
    console.log(`creating the PyTorch reference environment in ${venv}`);
    if (!run('python3', ['-m', 'venv', venv])) throw new Error('python3 -m venv failed: install Python 3 with the venv module');
  }
  const pip = path.join(venv, 'bin', 'pip');
  const requirements = path.join(referenceDir, 'requirements.txt');
  console.log(`installing torch==${want} (CPU wheel index first)`);
  const cpuWheel = run(pip, ['install', '--quiet', '--retries', '1', '--timeout', '20', '--index-url', TORCH_CPU_INDEX, `torch==${want}`]);
  if (!cpuWheel) console.log('CPU wheel index unreachable; installing torch from the default index');
  if (!run(pip, ['install', '--quiet', '-r', requirements]) || !installed()) {
    throw new Error(`could not install torch==${want} into ${venv}`);
  }
  return python;
}

/** Runs a child whose last stdout line is one JSON object, and returns that object. */
export function runChild<T>(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<T> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('error', reject);
    child.on('close', (code) => {
      const line = out.trim().split('\n').pop() ?? '';
      if (code !== 0 || !line.startsWith('{')) {
        reject(new Error(`${path.basename(args[0] ?? cmd)} exited ${code}:\n${err.slice(-2000)}`));
        return;
      }
      resolve(JSON.parse(line) as T);
    });
  });
}
