/** The registry of baseline defenses (NT-ML has its own pipeline; `none` needs no code). */
import { defenseConfigSchema, type BaselineDefenseConfig, type DefenseConfig } from './configs';
import type { DefensePlugin } from './defense';
import { ft } from './ft';
import { fp } from './fp';
import { nad } from './nad';
import { anp } from './anp';
import { ibau } from './ibau';

const BUILTIN_DEFENSES: DefensePlugin<any>[] = [ft, fp, nad, anp, ibau];

const registry = new Map<string, DefensePlugin<any>>(BUILTIN_DEFENSES.map((p) => [p.name, p]));

export function knownBaselines(): string[] {
  return [...registry.keys()];
}

export function getDefense(name: string): DefensePlugin<BaselineDefenseConfig> {
  const p = registry.get(name);
  if (!p) throw new Error(`unknown defense ${JSON.stringify(name)}; baselines: ${knownBaselines().join(', ')}`);
  return p;
}

export function isBaseline(cfg: DefenseConfig): cfg is BaselineDefenseConfig {
  return cfg.name !== 'none' && cfg.name !== 'ntml';
}

export { defenseConfigSchema };
