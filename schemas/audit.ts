/**
 * An audit request: which deployed model, the clean reference set it is measured on, and the
 * policy that turns the measurements into a verdict and actions. Pure (zod only): the
 * workflow parses its input with it, the CLI parses files with it before anything starts.
 */
import { z } from 'zod';
import { attackNames } from '../core/attacks/configs';
import { InputRange } from '../core/models/names';
import { ConfigError, DatasetFile, PurifyConfig, formatIssues } from './purify';
import { FILE_RULES, fileLocation, locationProblem, locationSchema } from './location';

/** Model formats people try to audit, and what to do instead. */
const OTHER_FORMATS: Array<[RegExp, string]> = [
  [/\.onnx$/i, 'ONNX'],
  [/\.(h5|hdf5|keras)$/i, 'Keras'],
  [/\.(pt|pth|ckpt)$/i, 'PyTorch'],
  [/\.(pb|savedmodel)$/i, 'TensorFlow SavedModel / frozen graph'],
  [/\.tflite$/i, 'TensorFlow Lite'],
  [/\.safetensors$/i, 'safetensors'],
  [/\.bin$/i, 'a bare weights file'],
];

export const LAYERS_ONLY =
  'audits read tfjs layers models only (model.json + its weight files); convert other formats with ' +
  '`tensorflowjs_converter --output_format=tfjs_layers_model`';

const layersModelLocation = fileLocation
  .superRefine((location, ctx) => {
    if (locationProblem(location, FILE_RULES)) return; // already reported by fileLocation
    const other = OTHER_FORMATS.find(([re]) => re.test(location));
    if (other) ctx.addIssue({ code: 'custom', message: `${location} looks like ${other[1]}; ${LAYERS_ONLY}` });
    else if (!/\.json$/i.test(location)) {
      ctx.addIssue({ code: 'custom', message: `expected the model.json of a tfjs layers model, got ${JSON.stringify(location)}; ${LAYERS_ONLY}` });
    }
  })
  .describe('model.json of a tfjs layers model: a local path, file:// or s3:// URI (weight files beside it)');

export const StoreArtifactRef = z
  .object({
    uri: locationSchema({ s3: true, fileUri: true, what: 'a store artifact' }),
    sha256: z.string().regex(/^[0-9a-f]{64}$/, '64 lowercase hex characters'),
    bytes: z.number().int().min(0),
  })
  .strict();

/** Exactly one of: a packed model in the artifact store, or a layers model.json at a location. */
export const DeployedModel = z
  .object({
    artifact: StoreArtifactRef.optional().describe('a model in the artifact store (e.g. a purified model from `ntml purify`)'),
    layersModel: layersModelLocation.optional(),
    inputRange: InputRange.optional().describe('how a layersModel expects pixels (default 0-1)'),
  })
  .strict()
  .superRefine((m, ctx) => {
    if ((m.artifact === undefined) === (m.layersModel === undefined)) {
      ctx.addIssue({
        code: 'custom',
        message: 'give exactly one of `artifact` (a model in the artifact store: {uri, sha256, bytes}) or `layersModel` (the model.json of a tfjs layers model)',
      });
    }
    if (m.artifact && m.inputRange) ctx.addIssue({ code: 'custom', path: ['inputRange'], message: 'a stored model records its own input range' });
  });
export type DeployedModel = z.output<typeof DeployedModel>;

const secretName = z
  .string()
  .regex(/^[A-Z][A-Z0-9_]{0,63}$/, 'upper-case letters, digits and "_" (the worker reads NTML_WEBHOOK_<NAME> or NTML_WEBHOOK_<NAME>_FILE)');

export const AuditPolicy = z
  .object({
    integrity: z
      .object({
        expectedDigest: z
          .string()
          .regex(/^[0-9a-f]{64}$/, '64 lowercase hex characters (the digest `ntml audit digest` prints)')
          .optional()
          .describe('the approved model\'s digest: any other gives the verdict `changed` (exit code 5) at every audit until the pin is updated'),
      })
      .strict()
      .prefault({}),
    accuracy: z
      .object({
        maxDrop: z.number().min(0).max(100).default(5).describe('clean-accuracy points the model may lose against the previous audit'),
        minimum: z.number().min(0).max(100).optional().describe('clean accuracy (%) below which the model is suspicious'),
      })
      .strict()
      .prefault({}),
    probes: z
      .object({
        asrThreshold: z.number().gt(0).max(100).default(50).describe('% of other-class images a known trigger may send to one class'),
        strength: z
          .number()
          .gt(0)
          .max(1)
          .default(1)
          .describe(
            "factor on the strength of the probes that have one (SIG's delta, Blended's alpha, WaNet's s; BadNets' patch has none): a backdoor still answers a weaker trigger, a clean model's drift under a strong full-image signal fades with it (docs/audits.md)",
          ),
        exclude: z
          .array(z.string())
          .default([])
          .describe('attacks not to probe, e.g. a trigger that is a natural feature of the data (say why in the policy file)'),
      })
      .strict()
      .prefault({}),
    neuralCleanse: z
      .object({
        enabled: z.boolean().default(true),
        stepsPerClass: z.number().int().min(1).max(100_000).default(300).describe('optimiser steps per class: the scan budget'),
        batchSize: z.number().int().min(1).max(1024).default(32),
        learningRate: z.number().positive().default(0.1),
        cost: z
          .union([z.literal('schedule'), z.number().min(0)])
          .default('schedule')
          .describe('"schedule" (NC: x1.5 after 3 rounds above the success threshold, /1.5^1.5 after 3 below) or a fixed L1 weight'),
        initialCost: z.number().positive().default(1e-3),
        attackSuccessThreshold: z.number().gt(0).max(1).default(0.99),
        anomalyThreshold: z.number().positive().default(2).describe('MAD anomaly index above which a small-trigger class is flagged'),
        seed: z.number().int().min(0).max(2 ** 31 - 1).default(0),
      })
      .strict()
      .prefault({}),
    webhook: z
      .object({
        secret: secretName.describe('name of the secret holding the webhook URL on the workers (never the URL itself)'),
        maxAttempts: z.number().int().min(1).max(20).default(5).describe('delivery attempts before the failure is recorded'),
      })
      .strict()
      .optional(),
    purifyOnBackdoored: z
      .object({
        trainingSet: DatasetFile.describe('the training set the deployed model was trained on'),
        cleanSet: DatasetFile.describe('the clean budget: a small trusted clean set'),
        testSet: DatasetFile.optional(),
        config: z
          .record(z.string(), z.unknown())
          .optional()
          .describe('further purify config fields (seed, tier, training, ntml, defense, ...)'),
      })
      .strict()
      .optional()
      .describe('when the verdict is backdoored: start `purify` in protection mode with the deployed model as the standard model'),
  })
  .strict();
export type AuditPolicy = z.output<typeof AuditPolicy>;

export const ModelId = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, 'letters, digits, ".", "_" and "-", at most 64, not starting with "." or "-"');

export const AuditRequest = z
  .object({
    modelId: ModelId.describe('names the deployed model across audits (history: audits/<modelId>/ in the store)'),
    model: DeployedModel,
    referenceSet: DatasetFile.describe('clean labelled images the model is measured on'),
    policy: AuditPolicy.prefault({}),
  })
  .strict()
  .superRefine((r, ctx) => {
    const known: readonly string[] = attackNames;
    r.policy.probes.exclude.forEach((name, i) => {
      if (!known.includes(name)) {
        ctx.addIssue({ code: 'custom', path: ['policy', 'probes', 'exclude', i], message: `unknown attack ${JSON.stringify(name)}; known attacks: ${known.join(', ')}` });
      }
    });
    const purify = r.policy.purifyOnBackdoored;
    if (purify) {
      const parsed = PurifyConfig.safeParse(purifyConfigFor(r, 'deployed/model.json'));
      if (!parsed.success) {
        for (const issue of parsed.error.issues) {
          const field = issue.path[0] as string;
          const isSet = ['trainingSet', 'cleanSet', 'testSet'].includes(field);
          // a data set the policy's own schema refused is reported once, from there
          if (isSet && !DatasetFile.safeParse(purify[field as 'trainingSet']).success) continue;
          const under = isSet ? [] : ['config'];
          ctx.addIssue({ ...issue, path: ['policy', 'purifyOnBackdoored', ...under, ...issue.path] } as never);
        }
      }
    }
  });
export type AuditRequestInput = z.input<typeof AuditRequest>;
export type AuditRequest = z.output<typeof AuditRequest>;

/**
 * The protection-mode purify config the audit starts for a backdoored verdict: the policy's
 * data and overrides, with the deployed model (as exported for the workers) as f_std.
 */
export function purifyConfigFor(r: Pick<AuditRequest, 'modelId' | 'model' | 'policy'>, standardModelJson: string): Record<string, unknown> {
  const p = r.policy.purifyOnBackdoored!;
  return {
    name: `audit-${r.modelId}`.slice(0, 64),
    ...(p.config ?? {}),
    mode: 'protection',
    trainingSet: p.trainingSet,
    cleanSet: p.cleanSet,
    ...(p.testSet ? { testSet: p.testSet } : {}),
    // the exported copy is in the layers format with its input range recorded in its metadata
    standardModel: { layersModel: standardModelJson },
  };
}

export function parseAuditRequest(raw: unknown, source = 'audit request'): AuditRequest {
  const result = AuditRequest.safeParse(raw);
  if (!result.success) {
    const issues = formatIssues(result.error);
    throw new ConfigError(`${source} is invalid:\n  ${issues.join('\n  ')}`, issues);
  }
  return result.data;
}

/** The neural-cleanse options of a policy, in the core's terms. */
export function ncOptionsOf(policy: AuditPolicy) {
  const nc = policy.neuralCleanse;
  return {
    stepsPerClass: nc.stepsPerClass,
    batchSize: nc.batchSize,
    learningRate: nc.learningRate,
    cost:
      nc.cost === 'schedule'
        ? ({ mode: 'schedule', initial: nc.initialCost, roundSteps: 10, patience: 3, multiplier: 1.5 } as const)
        : ({ mode: 'fixed', value: nc.cost } as const),
    attackSuccessThreshold: nc.attackSuccessThreshold,
    anomalyThreshold: nc.anomalyThreshold,
    seed: nc.seed,
  };
}
