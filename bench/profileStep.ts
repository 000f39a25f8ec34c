/**
 * Per-kernel profile of one training step (the profile tables in docs/performance.md):
 *   node dist/bench/profileStep.js [resnet20|smallCnn|tinyCnn] [--steps S] [--inference] [--ops] [--reference]
 * Batch 128 of 32x32x3, cross-entropy, SgdMomentum, on the path the environment selects
 * (--inference: one inference batch of 256 as predictLabels runs it, argmax read back)
 * (NTML_FAST_PATH, TF_ENABLE_ONEDNN_OPTS, TF_NUM_INTRAOP_THREADS). Prints wall and CPU time per
 * step and a Markdown table of leaf kernels from tf.profile (scopes that only group other kernels
 * are left out), with the native ops of the fast path (BN forward/backward, ReluGrad) timed
 * around their calls. A benchmark: never run in CI.
 *
 * Then the parallel-efficiency breakdown (why a step keeps fewer than all intra-op threads busy):
 * every native kernel call (tfjs-node's binding.executeOp, which runs the kernel synchronously
 * on the JavaScript thread's behalf) is timed for wall and process CPU time, without tf.profile's
 * own overhead. Per kernel: cores busy = CPU / wall. The time between kernels (tape, tensor
 * wrappers, argument marshalling in JavaScript) is the step's wall time minus the in-kernel time.
 *
 * --ops: also every native op of a step by name with its calls per step (the whole list, not the
 * top rows): what a change to the fast path removed shows up here as fewer calls.
 * --reference: training through fastApply's reference walk (residual Adds through the layer, each
 * BN's moving statistics updated on its own) and the SGD update one variable at a time: the fast
 * path before issue 22's per-step savings, for a before/after on the same build.
 */
import * as os from 'node:os';
import type * as TF from '@tensorflow/tfjs-node';
import { tf } from '../core/tf';
import { createClassifier } from '../core/models/layersFormat';
import { architectureNames, type ArchitectureName } from '../core/models/names';
import { SgdMomentum, trainableVariables } from '../core/train/sgd';
import { crossEntropy } from '../core/train/losses';
import { applyModel, fastApply, useFastPath } from '../core/train/fast';
import * as native from '../core/train/fast/native';
import { momentumUpdate } from '../core/train/fast/sgdUpdate';

// kernels that only group nested kernels, which the profile lists on their own
const SCOPES = new Set(['Step', 'fusedConv2d__op', 'unnamed scope', 'logSoftmax__op', 'fusedMatMul__op']);

async function main() {
  const args = process.argv.slice(2);
  const arch = (args.find((a) => architectureNames.includes(a as ArchitectureName)) ?? 'resnet20') as ArchitectureName;
  const stepsAt = args.indexOf('--steps');
  const steps = stepsAt >= 0 ? Number(args[stepsAt + 1]) : 4;
  const inference = args.includes('--inference');
  const listOps = args.includes('--ops');
  const reference = args.includes('--reference');
  const fast = useFastPath();
  if (reference && !fast) throw new Error('--reference compares fast-path walks: it needs the fast path on (NTML_FAST_PATH unset)');
  const forward = (input: TF.Tensor) => (reference ? fastApply(c.model, input, true, { reference }) : applyModel(c.model, input, true, fast)) as TF.Tensor2D;
  const c = createClassifier(arch, { height: 32, width: 32, channels: 3 }, 10, 1);
  const vars = trainableVariables(c.model);
  const optimizer = new SgdMomentum(vars, { momentum: 0.9, weightDecay: 5e-4 });
  // --reference: SgdMomentum's fast update with its stacking turned off, on velocities of its own
  const referenceVelocities = reference ? tf.tidy(() => vars.map((v) => tf.variable(tf.zerosLike(v), false))) : undefined;
  const x = tf.randomUniform([128, 32, 32, 3], 0, 1, 'float32', 1) as TF.Tensor4D;
  const y = tf.tensor1d(Array.from({ length: 128 }, (_, i) => i % 10), 'int32');
  const byKernel = new Map<string, { ms: number; calls: number }>();
  const add = (name: string, ms: number) => {
    const e = byKernel.get(name) ?? { ms: 0, calls: 0 };
    e.ms += ms;
    e.calls++;
    byKernel.set(name, e);
  };
  // time the fast path's native ops, which tf.profile does not see (they bypass the engine)
  const runNative = native.runNative;
  let recording = false;
  (native as { runNative: typeof runNative }).runNative = (op, attrs, inputs, n) => {
    const t = performance.now();
    const out = runNative(op, attrs, inputs, n);
    if (recording) add(`native ${op}`, performance.now() - t);
    return out;
  };
  const xInfer = tf.randomUniform([256, 32, 32, 3], 0, 1, 'float32', 2) as TF.Tensor4D;
  const inferenceStep = () => {
    const pred = tf.tidy(() => tf.argMax(applyModel(c.model, xInfer, false, fast), -1));
    pred.dataSync();
    pred.dispose();
  };
  const trainingStep = () => {
    const { value, grads } = tf.variableGrads(
      () => tf.tidy(() => crossEntropy(forward(x), y)),
      vars,
    );
    if (reference) momentumUpdate(vars, referenceVelocities!, vars.map((v) => grads[v.name]), 0.05, 0.9, 5e-4, false, false);
    else optimizer.step(vars.map((v) => grads[v.name]), 0.05);
    tf.dispose(grads);
    value.dispose();
  };
  const step = inference ? inferenceStep : trainingStep;

  tf.env().set('CHECK_COMPUTATION_FOR_ERRORS', false);
  for (let i = 0; i < 3; i++) step();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  for (let i = 0; i < steps; i++) step();
  const cpu = process.cpuUsage(cpu0);
  const wallMs = (performance.now() - t0) / steps;
  const cpuMs = (cpu.user + cpu.system) / 1000 / steps;

  const profiled = 2;
  for (let r = 0; r < profiled; r++) {
    recording = true;
    const p = await tf.profile(() => step());
    recording = false;
    for (const k of p.kernels) if (!SCOPES.has(k.name)) add(k.name, k.kernelTimeMs as number);
  }
  const efficiency = parallelEfficiency(step, steps);
  const rows = [...byKernel.entries()].sort((a, b) => b[1].ms - a[1].ms);
  const total = rows.reduce((s, [, e]) => s + e.ms, 0) / profiled;
  const kernels = rows.reduce((s, [, e]) => s + e.calls, 0) / profiled;
  console.log(
    `${arch} ${inference ? 'inference (batch 256)' : 'training (batch 128)'}, fast path ${fast ? (reference ? 'on (reference walk)' : 'on') : 'off'}, TF_ENABLE_ONEDNN_OPTS=${process.env.TF_ENABLE_ONEDNN_OPTS}, ` +
      `intra-op threads ${process.env.TF_NUM_INTRAOP_THREADS ?? 'default'}: ${wallMs.toFixed(0)} ms wall, ${cpuMs.toFixed(0)} ms CPU per step; ` +
      `${kernels} kernels, ${total.toFixed(0)} ms of kernel time; load average ${os.loadavg()[0].toFixed(2)}`,
  );
  console.log('| kernel | ms per step | calls | share |\n|---|---|---|---|');
  for (const [name, e] of rows.slice(0, 20)) {
    console.log(`| ${name} | ${(e.ms / profiled).toFixed(1)} | ${e.calls / profiled} | ${((100 * e.ms) / profiled / total).toFixed(1)}% |`);
  }
  printEfficiency(efficiency, wallMs, cpuMs);
  if (listOps) printOps(efficiency);
  optimizer.dispose();
  tf.dispose(referenceVelocities ?? []);
  c.model.dispose();
}

interface KernelCost {
  wallMs: number;
  cpuMs: number;
  calls: number;
}

interface Efficiency {
  byKernel: Map<string, KernelCost>;
  wallMs: number;
  cpuMs: number;
  steps: number;
}

/** Runs `steps` steps with every native kernel call timed for wall and CPU time. */
function parallelEfficiency(step: () => void, steps: number): Efficiency {
  // the binding's own properties are read-only: the backend gets an object inheriting from it for the duration
  const backend = tf.backend() as unknown as { binding: { executeOp: (...a: unknown[]) => unknown } };
  const binding = backend.binding;
  const byKernel = new Map<string, KernelCost>();
  const timedExecuteOp = (...a: unknown[]) => {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    const out = binding.executeOp(...a);
    const wall = performance.now() - t0;
    const c = process.cpuUsage(c0);
    const e = byKernel.get(a[0] as string) ?? { wallMs: 0, cpuMs: 0, calls: 0 };
    e.wallMs += wall;
    e.cpuMs += (c.user + c.system) / 1000;
    e.calls++;
    byKernel.set(a[0] as string, e);
    return out;
  };
  backend.binding = Object.defineProperty(Object.create(binding), 'executeOp', { value: timedExecuteOp });
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  try {
    for (let i = 0; i < steps; i++) step();
  } finally {
    backend.binding = binding;
  }
  const c = process.cpuUsage(c0);
  return { byKernel, wallMs: performance.now() - t0, cpuMs: (c.user + c.system) / 1000, steps };
}

function printEfficiency(e: Efficiency, untimedWallMs: number, untimedCpuMs: number): void {
  const threads = Number(process.env.TF_NUM_INTRAOP_THREADS) || os.cpus().length;
  const per = (v: number) => v / e.steps;
  const rows = [...e.byKernel.entries()].sort((a, b) => b[1].wallMs - a[1].wallMs);
  const inKernelWall = rows.reduce((s, [, k]) => s + k.wallMs, 0);
  const inKernelCpu = rows.reduce((s, [, k]) => s + k.cpuMs, 0);
  const between = { wallMs: e.wallMs - inKernelWall, cpuMs: e.cpuMs - inKernelCpu };
  // core-time the step leaves idle, in ms per step: threads x wall - CPU
  const idle = (k: { wallMs: number; cpuMs: number }) => Math.max(0, threads * k.wallMs - k.cpuMs);
  const totalIdle = idle(e);
  console.log(
    `\nParallel efficiency, ${threads} intra-op thread(s): ${per(e.wallMs).toFixed(0)} ms wall, ${per(e.cpuMs).toFixed(0)} ms CPU per step ` +
      `with per-kernel timing (${untimedWallMs.toFixed(0)} / ${untimedCpuMs.toFixed(0)} without); cores busy ${(e.cpuMs / e.wallMs).toFixed(2)} of ${threads}; ` +
      `idle core time ${per(totalIdle).toFixed(0)} ms per step.`,
  );
  console.log('| where | wall ms per step | CPU ms per step | cores busy | calls | share of idle core time |\n|---|---|---|---|---|---|');
  const line = (name: string, k: { wallMs: number; cpuMs: number }, calls: string) =>
    console.log(
      `| ${name} | ${per(k.wallMs).toFixed(1)} | ${per(k.cpuMs).toFixed(1)} | ${(k.cpuMs / Math.max(k.wallMs, 1e-9)).toFixed(2)} | ${calls} | ` +
        // at one thread nothing is idle: a share of (almost) nothing would be noise
        `${per(totalIdle) < 1 ? '-' : `${((100 * idle(k)) / totalIdle).toFixed(1)}%`} |`,
    );
  line('between kernels (JavaScript)', between, '');
  for (const [name, k] of rows.slice(0, 14)) line(name, k, String(per(k.calls)));
  const rest = rows.slice(14).reduce((s, [, k]) => ({ wallMs: s.wallMs + k.wallMs, cpuMs: s.cpuMs + k.cpuMs, calls: s.calls + k.calls }), { wallMs: 0, cpuMs: 0, calls: 0 });
  if (rest.calls > 0) line(`${rows.length - 14} other kernels`, rest, String(per(rest.calls)));
}

/** Every native op of a step: calls and wall ms per step, most calls first. */
function printOps(e: Efficiency): void {
  const rows = [...e.byKernel.entries()].sort((a, b) => b[1].calls - a[1].calls || a[0].localeCompare(b[0]));
  const calls = rows.reduce((s, [, k]) => s + k.calls, 0) / e.steps;
  console.log(`\nNative calls per step: ${calls} in all`);
  console.log('| native op | calls per step | wall ms per step |\n|---|---|---|');
  for (const [name, k] of rows) console.log(`| ${name} | ${k.calls / e.steps} | ${(k.wallMs / e.steps).toFixed(1)} |`);
}

main().catch((err) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
