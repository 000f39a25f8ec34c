/**
 * What the benchmarks share: the machine description they print and store, the PyTorch
 * reference environment (bench/reference/pytorchEnv.ts), and a child process that answers
 * with one JSON line. Each configuration of a bench runs in its own child so that its
 * peak RSS is its own.
 */
import * as os from 'node:os';
import { tf, nativeTensorflowVersion, backendKind } from '../core/tf';

export { pytorchPython, referenceDir } from './reference/pytorchEnv';

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

export { runChild } from './childJson';
