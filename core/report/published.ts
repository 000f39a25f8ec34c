/**
 * Published reference rows the sweep report prints beside its own, from another tier.
 *
 * Source: the BackdoorBench leaderboard, CIFAR-10, PreAct-ResNet18 trained 100 epochs, poisoning
 * rate 10%, defenses given 5% clean data (Wu et al., "BackdoorBench: A Comprehensive Benchmark of
 * Backdoor Learning", NeurIPS 2022 Datasets and Benchmarks, and its leaderboard at
 * backdoorbench.github.io), as quoted in the project's protocol spec ("Published anchor numbers").
 * Clean accuracy / ASR / DER in %. The leaderboard has no Narcissus row and no NT-ML column; those
 * are reported as "not in our reference" rather than filled from elsewhere.
 *
 * These rows are not comparable number for number with a cpu-tier table (a small CNN on a 20k
 * subset for 8 epochs): they say what each defense does to each attack at full scale.
 */

export interface PublishedRow {
  /** clean accuracy after the defense (or of the backdoored model for "none") */
  acc: number;
  asr: number;
  /** BackdoorBench's DER; absent for the undefended model */
  der?: number;
}

export const PUBLISHED_SOURCE = 'BackdoorBench leaderboard';
/** How the report labels these rows: a different tier, never this table's numbers. */
export const PUBLISHED_TIER = 'PreAct-ResNet18, 100 epochs, CIFAR-10, poisoning rate 10%, 5% clean data';
export const NOT_IN_REFERENCE = 'not in our reference';

type Defense = 'none' | 'ft' | 'fp' | 'nad' | 'anp' | 'ibau';
const row = (acc: number, asr: number, der?: number): PublishedRow => (der === undefined ? { acc, asr } : { acc, asr, der });

/** attack (this project's names) -> defense (this project's names) -> the published row. */
const BACKDOORBENCH_CIFAR10: Readonly<Record<string, Readonly<Record<Defense, PublishedRow>>>> = {
  badnets: { none: row(91.32, 95.03), ft: row(89.96, 1.48, 96.1), fp: row(91.31, 57.13, 68.9), nad: row(89.87, 2.14, 95.7), anp: row(84.17, 0.73, 93.6), ibau: row(89.16, 1.29, 95.8) },
  blended: { none: row(93.47, 99.92), ft: row(92.78, 96.11, 51.6), fp: row(93.17, 99.26, 50.2), nad: row(92.17, 97.69, 50.5), anp: row(86.58, 2.19, 95.4), ibau: row(87.0, 50.53, 71.5) },
  wanet: { none: row(91.25, 89.73), ft: row(93.48, 17.1, 86.3), fp: row(91.46, 1.09, 94.3), nad: row(93.17, 22.98, 83.4), anp: row(85.73, 0.43, 91.9), ibau: row(89.49, 5.21, 91.4) },
  sig: { none: row(84.48, 98.27), ft: row(90.8, 2.37, 97.9), fp: row(89.1, 26.2, 86.0), nad: row(90.02, 10.66, 93.8), anp: row(77.97, 0.01, 95.9), ibau: row(85.67, 3.68, 97.3) },
  inputaware: { none: row(90.67, 98.26), ft: row(93.12, 1.72, 98.3), fp: row(91.74, 0.04, 99.1), nad: row(93.18, 1.68, 98.3), anp: row(90.36, 1.64, 98.2), ibau: row(89.17, 27.08, 84.8) },
};

/** The published row for an attack and a defense (by their names in configs), or undefined when the reference has none. */
export function publishedRow(attack: string, defense: string): PublishedRow | undefined {
  return (BACKDOORBENCH_CIFAR10[attack] as Record<string, PublishedRow> | undefined)?.[defense];
}

/** "91.3 / 1.5; DER 96.1" (ACC / ASR; DER), or "not in our reference". */
export function publishedText(p: PublishedRow | undefined | null): string {
  if (!p) return NOT_IN_REFERENCE;
  return `${p.acc.toFixed(1)} / ${p.asr.toFixed(1)}${p.der === undefined ? '' : `; DER ${p.der.toFixed(1)}`}`;
}
