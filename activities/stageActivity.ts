/**
 * The one shape of every pipeline activity, with its wrappers in a fixed order:
 *   heartbeat keep-alive
 *     -> non-retryable conversion of bad input (config, files, models, missing artifacts)
 *       -> store outages heartbeat (merged into the last details) while they last
 *       -> parse the config once -> stage cache lookup (cached stages)
 *         -> run the core call on the declared config view; models disposed in `finally`
 *       -> store the output in the cache
 * An activity is then a short function: load its artifacts, call core, save the results.
 */
import { Context } from '@temporalio/activity';
import { declaredView } from '../core/pipeline/configReads';
import { DisposalScope, type StageEnv } from '../core/pipeline/stageEnv';
import type { StageControl } from '../core/ntml/stages';
import type { Classifier } from '../core/models/classifier';
import type { PurifyConfig } from '../schemas/purify';
import type { ArtifactRef } from '../store';
import { checkpointHooks, findResumePoint, prepareControl, withStoreOutage, type ResumeInfo } from './checkpointing';
import { cachedStage, stageKey, type StageDeclaration } from './stageCache';
import {
  artifactStore,
  config as parseConfig,
  heartbeatDetails,
  lastHeartbeatDetails,
  loadModel,
  localFile,
  nonRetryableOnBadInput,
  withKeepAlive,
} from './context';
import type { StageInput } from './stageDeclarations';

/** What an activity's body gets: a StageEnv backed by the activity's checkpoints, plus timing and resume bookkeeping. */
export class ActivityHost implements StageEnv {
  readonly scope = new DisposalScope();
  /** each training phase's resume point, in the order the phases started */
  readonly phases: Array<{ stage: string; info: ResumeInfo }> = [];
  private readonly t0 = Date.now();

  async phase(stage: string, epochs: number): Promise<StageControl> {
    const { checkpoint, info } = await findResumePoint(stage, epochs);
    this.phases.push({ stage, info });
    return { resume: checkpoint, hooks: checkpointHooks(stage, epochs) };
  }

  /** checkpoint control of a computation that is not an epoch loop (a learned trigger) */
  async prepareControl(stage: string) {
    const out = await prepareControl(stage);
    this.phases.push({ stage, info: out.info });
    return out;
  }

  localFile(location: string): Promise<string> {
    return localFile(location);
  }

  progress(detail: Record<string, unknown>): void {
    heartbeatDetails(detail);
  }

  get signal(): AbortSignal {
    return Context.current().cancellationSignal;
  }

  /** loads a stored model, owned by the scope */
  async model(ref: ArtifactRef): Promise<Classifier> {
    return this.scope.classifier(await loadModel(ref));
  }

  /** the single phase's resume point (none started: nothing resumed) */
  resumeInfo(): ResumeInfo {
    const last = this.phases.at(-1);
    return last ? last.info : { resumedFromEpoch: 0, skippedCheckpoints: [] };
  }

  seconds(): number {
    return (Date.now() - this.t0) / 1000;
  }
}

/** Runs an activity's body with a fresh host; whatever its scope owns is disposed however the body ends. */
async function withHost<O>(run: (host: ActivityHost) => Promise<O>): Promise<O> {
  const host = new ActivityHost();
  try {
    return await run(host);
  } finally {
    const errors = host.scope.disposeAll();
    if (errors.length) Context.current().log.warn(`disposing the stage's models failed: ${errors.map(String).join('; ')}`);
  }
}

/**
 * For the activity's lifetime, each change of the store's outage state (a failed attempt, the
 * recovery) is heartbeat at once, merged into the last details, which the keep-alive then repeats:
 * `ntml purify status` sees "S3 unreachable since ..." and a resume still finds its checkpoint.
 */
async function withOutageHeartbeats<T>(f: () => Promise<T>): Promise<T> {
  // the listener runs in whichever activity's request failed: beat on this activity's context
  const ctx = Context.current();
  const unsubscribe = artifactStore().onOutage?.((state) => {
    heartbeatDetails(withStoreOutage(lastHeartbeatDetails(ctx), state), ctx);
  });
  try {
    return await f();
  } finally {
    unsubscribe?.();
  }
}

/** An activity that is not a cached stage: the same wrappers, no cache. */
export async function activity<O>(run: (host: ActivityHost) => Promise<O>): Promise<O> {
  return withKeepAlive(() => nonRetryableOnBadInput(() => withOutageHeartbeats(() => withHost(run))));
}

/** An activity that reads the purify config but is not cached (the config still parsed once, here). */
export async function configActivity<O>(input: { config: unknown }, run: (cfg: PurifyConfig, host: ActivityHost) => Promise<O>): Promise<O> {
  return activity((host) => run(parseConfig(input.config), host));
}

/**
 * A cached stage: its key comes from `declaration` alone, and `run` sees the config through a
 * view that throws on any field the declaration does not list, so the key cannot miss one.
 */
export async function stageActivity<I extends StageInput, O extends object>(
  declaration: StageDeclaration<I>,
  input: I,
  run: (cfg: PurifyConfig, host: ActivityHost) => Promise<O>,
): Promise<O & { cached: boolean; cacheKey: string }> {
  return withKeepAlive(() =>
    nonRetryableOnBadInput(() =>
      withOutageHeartbeats(async () => {
        const cfg = parseConfig(input.config);
        const enabled = input.cache !== false && (declaration.cacheable?.(cfg) ?? true);
        const content = (await declaration.contentKeyed?.(cfg)) ?? {};
        const key = stageKey(declaration, cfg, input, content);
        const view = declaredView(cfg, declaration.stage, declaration.reads);
        // checkpoints filed under the key as it was before content keys are still resumed from
        const former = Object.keys(content).length ? stageKey(declaration, cfg, input) : undefined;
        return cachedStage(declaration, key, enabled, () => withHost((host) => run(view, host)), former);
      }),
    ),
  );
}
