/**
 * Known-trigger probes: every trigger of the attack library, applied with the library's
 * default parameters to the reference set. The target of a deployed backdoor is unknown, so
 * for every class c the probe reports the attack success rate towards c: the % of reference
 * images of other classes that the model predicts as c once triggered, next to the same
 * rate without the trigger (the model's own confusion into c), and names the worst class.
 *
 * Triggers that depend on a run use what a default run of the library uses: WaNet's warp
 * comes from the attack seed of a run with seed 0 (deriveSeed(0, 'attack')), Blended's
 * noise from patternSeed 0. Input-Aware and Narcissus have no data-free default: their
 * trigger is learned per run together with (IAD) or against (Narcissus) a model, so they are
 * reported as skipped with the reason; the Neural-Cleanse scan is what covers such triggers.
 */
import { deriveSeed } from '../rng';
import type { ImageDataset } from '../data/dataset';
import { predictLabels, type Classifier } from '../models/classifier';
import { AttackConfigError, getAttack, knownAttacks, parseAttackConfig, validateTriggerAgainst } from '../attacks/registry';

/** The attack seed of a library run with the default seed 0 (prepareData derives it this way). */
export const DEFAULT_PROBE_SEED = deriveSeed(0, 'attack');

/** Why a registered attack has no trigger to probe with (attacks without an entry are tried). */
export const UNPROBED_ATTACKS: Readonly<Record<string, string>> = {
  inputaware:
    'skipped: training-controlled; its trigger is the output of mask and pattern generators trained together with the backdoored model, so there is no data-free default trigger (the Neural-Cleanse scan covers it)',
  narcissus:
    'skipped: its trigger is a perturbation optimised per run on a surrogate model and the target class (minutes of training), so the library has no fixed default pattern (the Neural-Cleanse scan covers it)',
};

/**
 * Each probe's strength knob (core/attacks/configs.ts): a probe at strength f applies the
 * library's default trigger with this field at f x its default; attacks without one (BadNets'
 * patch) probe at their default whatever f. Measured on CIFAR-10 cpu-tier models
 * (bench/results/probe-strength): a backdoor answers its trigger steeply (SIG models: 15 % of the
 * reference images sent to the target at x0.5, 76-82 % at x0.75, 99 % at x1), while a clean
 * model's drift under the full-strength SIG signal grows with the signal (to 49 % at x1, 40 % at
 * x0.75).
 */
export const PROBE_STRENGTH_KNOBS: Readonly<Record<string, string>> = { sig: 'delta', blended: 'alpha', wanet: 's' };

/** The probe config of `attack` at `strength` x its default strength knob (the default config at 1 or without a knob). */
export function probeConfig(attack: string, strength = 1) {
  const defaults = parseAttackConfig({ name: attack });
  const knob = PROBE_STRENGTH_KNOBS[attack];
  if (strength === 1 || !knob) return defaults;
  return parseAttackConfig({ name: attack, [knob]: (defaults as unknown as Record<string, number>)[knob] * strength });
}

export interface AttackProbe {
  attack: string;
  status: 'probed' | 'skipped';
  /** how the trigger was made (config and seed), or why it was skipped */
  how: string;
  /** per class c: % of triggered reference images of other classes predicted as c */
  asrByClass?: number[];
  /** per class c: % of the same images, untriggered, predicted as c */
  cleanRateByClass?: number[];
  worstClass?: number;
  worstAsr?: number;
}

export interface ProbeReport {
  seed: number;
  /** the policy's factor on the probes' strength knobs (absent: 1, the library's defaults) */
  strength?: number;
  referenceSize: number;
  probes: AttackProbe[];
}

/** Per class c: % of the images whose label is not c that are predicted as c. */
export function rateTowardsEachClass(predictions: Int32Array, labels: Int32Array, numClasses: number): number[] {
  const hits = new Array<number>(numClasses).fill(0);
  const others = new Array<number>(numClasses).fill(0);
  const perClass = new Array<number>(numClasses).fill(0);
  for (let i = 0; i < labels.length; i++) perClass[labels[i]]++;
  for (let c = 0; c < numClasses; c++) others[c] = labels.length - perClass[c];
  for (let i = 0; i < labels.length; i++) if (predictions[i] !== labels[i]) hits[predictions[i]]++;
  return hits.map((h, c) => (others[c] === 0 ? NaN : (100 * h) / others[c]));
}

/** The class with the highest ASR and that ASR (the lowest class on a tie). */
export function worst(asr: number[]): { worstClass: number; worstAsr: number } {
  let worstClass = 0;
  for (let c = 1; c < asr.length; c++) if (asr[c] > asr[worstClass]) worstClass = c;
  return { worstClass, worstAsr: asr[worstClass] };
}

/** Probes `attacks` (default: every registered attack) on `reference`. */
export async function probeKnownTriggers(
  c: Classifier,
  reference: ImageDataset,
  options: { attacks?: string[]; seed?: number; strength?: number } = {},
): Promise<ProbeReport> {
  const seed = options.seed ?? DEFAULT_PROBE_SEED;
  const strength = options.strength ?? 1;
  const names = options.attacks ?? knownAttacks();
  const clean = await predictLabels(c, reference);
  const cleanRateByClass = rateTowardsEachClass(clean, reference.labels, reference.numClasses);
  const probes: AttackProbe[] = [];
  for (const attack of names) {
    if (UNPROBED_ATTACKS[attack]) {
      probes.push({ attack, status: 'skipped', how: UNPROBED_ATTACKS[attack] });
      continue;
    }
    let triggered: ImageDataset;
    let config;
    try {
      config = probeConfig(attack, strength);
      validateTriggerAgainst(config, reference);
      triggered = getAttack(attack).applyTrigger(reference, config, seed);
    } catch (err) {
      if (!(err instanceof AttackConfigError)) throw err;
      probes.push({ attack, status: 'skipped', how: `skipped: ${err.message}` });
      continue;
    }
    const asrByClass = rateTowardsEachClass(await predictLabels(c, triggered), reference.labels, reference.numClasses);
    // target, rate and labelMap belong to poisoning, not to the trigger
    const parameters = Object.fromEntries(Object.entries(config).filter(([k]) => !['name', 'target', 'rate', 'labelMap'].includes(k)));
    probes.push({
      attack,
      status: 'probed',
      how: `${strength !== 1 && PROBE_STRENGTH_KNOBS[attack] ? `default trigger at x${strength} ${PROBE_STRENGTH_KNOBS[attack]}` : 'default trigger'} ${JSON.stringify(parameters)}, attack seed ${seed}`,
      asrByClass,
      cleanRateByClass,
      ...worst(asrByClass),
    });
  }
  return { seed, referenceSize: reference.labels.length, ...(strength !== 1 ? { strength } : {}), probes };
}

/** The report with the policy's excluded attacks marked as skipped, saying why. */
export function excludeProbes(report: ProbeReport, exclude: string[]): ProbeReport {
  const probes = report.probes.map((p) =>
    exclude.includes(p.attack) ? { attack: p.attack, status: 'skipped' as const, how: 'skipped: excluded by the audit policy (probes.exclude)' } : p,
  );
  return { ...report, probes };
}
