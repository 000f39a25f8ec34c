/**
 * What a pipeline stage gets from whoever hosts it (a Temporal activity, a test, a script):
 * checkpoint control per training phase, a way to read user files, and a scope that owns the
 * models the stage creates or loads, so the host disposes them whether the stage succeeds or throws.
 */
import type { Classifier } from '../models/classifier';
import type { StageControl } from '../ntml/stages';

export interface Disposable {
  dispose(): unknown;
}

/** Models (and other tensor holders) a stage owns until it ends, disposed once each by `disposeAll`. */
export class DisposalScope {
  private readonly owned: Disposable[] = [];

  /** Owns `x` (disposed when the scope ends); returns it for chaining. */
  own<T extends Disposable>(x: T): T {
    if (!this.owned.includes(x)) this.owned.push(x);
    return x;
  }

  classifier<T extends Classifier>(c: T): T {
    this.own(c.model);
    return c;
  }

  /** Disposes `x` now (a model no longer needed before the stage ends) and stops owning it. */
  release(x: Disposable): void {
    const i = this.owned.indexOf(x);
    if (i >= 0) this.owned.splice(i, 1);
    x.dispose();
  }

  /**
   * Disposes everything owned, newest first; one failure does not keep the rest alive. Returns
   * the failures rather than throwing them: it runs in `finally`, where a throw would hide the
   * stage's own error.
   */
  disposeAll(): unknown[] {
    const errors: unknown[] = [];
    while (this.owned.length) {
      try {
        this.owned.pop()!.dispose();
      } catch (err) {
        errors.push(err);
      }
    }
    return errors;
  }
}

export interface StageEnv {
  /** checkpoint control of one named training phase of `epochs` epochs */
  phase(name: string, epochs: number): Promise<StageControl>;
  /** a user-given location (path, file://, s3://) as a local file */
  localFile(location: string): Promise<string>;
  /** owns what the stage creates or loads */
  scope: DisposalScope;
  /** liveness and progress of work outside an epoch loop */
  progress?(detail: Record<string, unknown>): void;
  signal?: AbortSignal;
}

/** An environment without checkpoints, for running stages in-process (tests, library use). */
export function plainStageEnv(scope = new DisposalScope()): StageEnv {
  return {
    phase: async () => ({}),
    localFile: async (location) => (location.startsWith('file://') ? new URL(location).pathname : location),
    scope,
  };
}
