/**
 * The tiny ci-tier sweep that the sweep, bundle and fault tests and the soak benchmark share: a
 * synthetic data set of 400 training and 200 test images, a clean budget of 50 and short NT-ML
 * stages, so that every stage kind runs (data, trained stages with checkpoints, split,
 * evaluation) in seconds; the sweep's mechanics are under test, not the defense.
 * No imports beyond types: bench/soak.ts uses it outside the test runner.
 */
import type { SweepSpecInput } from '../../schemas/sweep';

export interface TinySweepOptions {
  /** standard (and teacher) training epochs; default 2 */
  epochs?: number;
  /** NT-ML's mutual-learning epochs; default 4. null leaves the ntml block out (cells without NT-ML) */
  mlEpochs?: number | null;
  /** cells at once; default 2 */
  concurrency?: number;
}

/** The cells' shared base config. */
export function tinySweepBase(options: TinySweepOptions = {}): Record<string, unknown> {
  const { epochs = 2, mlEpochs = 4 } = options;
  return {
    mode: 'evaluation',
    tier: 'ci',
    data: { format: 'synthetic', trainSize: 400, testSize: 200 },
    cleanBudget: 50,
    training: { epochs },
    ...(mlEpochs === null ? {} : { ntml: { ntEpochs: 1, mlEpochs, splitEpochs: 1, diagnosticSamples: 50 } }),
  };
}

/** A sweep spec named `name` over `grid` on the tiny base. */
export function tinySweep(name: string, grid: SweepSpecInput['grid'], options: TinySweepOptions = {}): SweepSpecInput {
  return { name, base: tinySweepBase(options), grid, concurrency: options.concurrency ?? 2 };
}
