/**
 * The PyTorch reference environment shared by the benchmarks that compare against PyTorch
 * (bench/throughput, bench/recipeCompare): a virtual environment under
 * ~/.cache/ntml/bench-venv with bench/reference/requirements.txt installed, created on first
 * use and reused while its torch is the pinned version. Never used in CI.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { findRepoRoot } from '../../store/repoRoot';

export const referenceDir = path.join(findRepoRoot(__dirname) ?? process.cwd(), 'bench', 'reference');
const venv = path.join(os.homedir(), '.cache', 'ntml', 'bench-venv');
// the CPU-only wheels of the pinned version; where unreachable, pip's default index (which
// serves the same version as a CUDA build: larger, and just as CPU-bound here)
const TORCH_CPU_INDEX = 'https://download.pytorch.org/whl/cpu';

export function pinnedTorch(): string {
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
