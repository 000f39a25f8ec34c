/**
 * A baseline defense as a pipeline stage: the defense named in the config runs on the
 * backdoored model and the clean budget, each of its training phases under the host's
 * checkpoint control. The defended model (which may be the input, changed in place) is
 * owned by `env.scope` like the input.
 */
import { deriveSeed } from '../rng';
import type { ImageDataset } from '../data/dataset';
import type { Classifier } from '../models/classifier';
import { defenseConfigSchema, defenseDisplayName } from '../defenses/configs';
import { getDefense, isBaseline } from '../defenses/registry';
import type { DefenseOutcome } from '../defenses/defense';
import { ConfigError, type PurifyConfig } from '../../schemas/purify';
import type { StageEnv } from './stageEnv';

export async function baselineDefenseStage(
  cfg: PurifyConfig,
  backdoored: Classifier,
  clean: { cleanFit: ImageDataset; cleanHeldOut: ImageDataset },
  env: StageEnv,
): Promise<DefenseOutcome & { name: string; displayName: string }> {
  const defense = defenseConfigSchema.parse(cfg.defense);
  if (!isBaseline(defense)) throw new ConfigError(`defense.name: the baseline defense stage runs the baselines, not ${defense.name}`);
  const outcome = await getDefense(defense.name).run(
    backdoored,
    {
      ...clean,
      augment: cfg.training.augment,
      seed: deriveSeed(cfg.seed, `defense:${defense.name}`),
      phase: (name, epochs) => env.phase(`defense-${defense.name}-${name}`, epochs),
      progress: env.progress && ((detail) => env.progress!({ stage: `defense-${defense.name}`, epoch: 0, ...detail })),
      signal: env.signal,
    },
    defense,
  );
  env.scope.classifier(outcome.model);
  return { ...outcome, name: defense.name, displayName: defenseDisplayName(defense) };
}
