/**
 * A sweep spec: a base purify config and a grid of axes. The cartesian product is expanded
 * in a fixed order, and each cell gets a stable id derived from the hash of its full config,
 * so re-running a spec finds its finished cells again. The data's location is not part of the
 * id when its content digest is given (dataContentFingerprint): the same bytes in another
 * folder give the same ids. Pure: the sweep workflow imports it.
 */
import { z } from 'zod';
import { PurifyConfig, formatIssues, ConfigError } from './purify';
import { defenseNames, type DefenseName } from '../core/defenses/configs';
import { LEARNED_TRIGGER_IGNORES } from '../core/attacks/configs';
import { SEED_ROLES, seedRoleRange, seedsOutsideRole, type SeedRole } from './seedRoles';

const seedRange = z
  .object({ from: z.number().int().min(0), to: z.number().int().min(0) })
  .strict()
  .refine((r) => r.to >= r.from && r.to - r.from < 1000, 'expected from <= to, at most 1000 seeds');

export const DefenseSpec = z
  .object({
    name: z.enum(defenseNames as [DefenseName, ...DefenseName[]]).describe(`the defense: ${defenseNames.join(', ')}`),
    label: z.string().regex(/^[A-Za-z0-9._=,()% -]{1,64}$/).optional().describe('name in tables (default: derived from the settings)'),
    // checked as part of each cell's purify config; kept raw here so labels show only what was set
    ntml: z.record(z.string(), z.unknown()).optional().describe('NT-ML switches of this defense (name: ntml)'),
  })
  // a baseline's own settings (e.g. steps, accRatio) sit beside its name, as in a purify config's `defense`
  .catchall(z.unknown())
  .superRefine((d, ctx) => {
    if (d.ntml !== undefined && d.name !== 'ntml') ctx.addIssue({ code: 'custom', path: ['ntml'], message: `NT-ML switches given to defense ${d.name}` });
  });
export type DefenseSpec = z.infer<typeof DefenseSpec>;

// the issue's path already names the axis (grid.attack: the grid axis is empty)
const nonEmpty = <T extends z.ZodTypeAny>(t: T, _what: string) => z.array(t).min(1, 'the grid axis is empty');

export const SweepSpec = z
  .object({
    name: z.string().regex(/^[A-Za-z0-9._-]{1,48}$/, 'letters, digits, ".", "_" and "-", at most 48'),
    base: z.record(z.string(), z.unknown()).describe('purify config fields shared by every cell'),
    grid: z
      .object({
        attack: nonEmpty(z.record(z.string(), z.unknown()), 'grid.attack').optional(),
        defense: nonEmpty(DefenseSpec, 'grid.defense').optional(),
        seed: z.union([nonEmpty(z.number().int().min(0), 'grid.seed'), seedRange]).optional(),
        cleanBudget: nonEmpty(z.union([z.number().int().min(1), z.object({ fraction: z.number().gt(0).lt(1) }).strict()]), 'grid.cleanBudget').optional(),
        model: nonEmpty(z.record(z.string(), z.unknown()), 'grid.model').optional(),
      })
      .strict(),
    concurrency: z.number().int().min(1).max(64).default(2).describe('cells running at once'),
    seedRole: z
      .enum(SEED_ROLES as [SeedRole, ...SeedRole[]])
      .default('dev')
      .describe(`which role the seeds play (protocol): dev for screens, ablations and choices of defaults; report for published tables, untouched by any choice. ${seedRoleRange('dev')}, ${seedRoleRange('report')}`),
  })
  .strict()
  .superRefine((spec, ctx) => {
    const g = spec.grid.seed;
    const seeds = g === undefined ? [Number((spec.base as { seed?: unknown }).seed ?? 0)] : Array.isArray(g) ? g : [g.from, g.to];
    const wrong = seedsOutsideRole(seeds.filter(Number.isFinite), spec.seedRole);
    if (wrong.length) {
      ctx.addIssue({
        code: 'custom',
        path: [g === undefined ? 'base' : 'grid', 'seed'],
        message: `seedRole ${spec.seedRole}: seeds ${wrong.join(', ')} are not ${spec.seedRole} seeds (${seedRoleRange(spec.seedRole)})`,
      });
    }
  });
export type SweepSpecInput = z.input<typeof SweepSpec>;
export type SweepSpec = z.output<typeof SweepSpec>;

export interface SweepCell {
  id: string;
  axes: { attack: string; defense: string; seed: number; cleanBudget: string; model: string };
  config: Record<string, unknown>;
}

/** "wanet · none · D_c 100 · seed 2" (the model only when it is not the tier's default). */
export function cellLabel(axes: SweepCell['axes']): string {
  const parts = [axes.attack, axes.defense, `D_c ${axes.cleanBudget}`, `seed ${axes.seed}`];
  if (axes.model !== 'tier default') parts.splice(3, 0, axes.model);
  return parts.join(' · ');
}

/** FNV-1a, 64 bits as two 32-bit lanes: deterministic and available inside workflows. */
export function stableHash(text: string): string {
  let h1 = 0x811c9dc5;
  let h2 = 0x01000193 ^ 0x9e3779b9;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    h1 = Math.imul(h1 ^ c, 0x01000193) >>> 0;
    h2 = Math.imul(h2 ^ c, 0x5bd1e995) >>> 0;
    h2 ^= h2 >>> 15;
  }
  return (h1.toString(16).padStart(8, '0') + (h2 >>> 0).toString(16).padStart(8, '0')).slice(0, 16);
}

/** JSON with sorted keys, so equal configs hash equally. */
export function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value && typeof value === 'object') {
    const o = value as Record<string, unknown>;
    return `{${Object.keys(o)
      .filter((k) => o[k] !== undefined)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical(o[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(value);
}

function defenseLabel(d: DefenseSpec): string {
  if (d.label) return d.label;
  const { name, label: _label, ntml, ...own } = d;
  const settings = Object.entries(name === 'ntml' ? (ntml ?? {}) : own).map(([k, v]) => `${k}=${typeof v === 'object' ? JSON.stringify(v) : v}`);
  return settings.length ? `${name}(${settings.join(',')})` : name;
}

/** The `defense` (and NT-ML switches) a cell's purify config gets from its defense axis entry. */
function defenseFields(d: DefenseSpec, base: Record<string, any>): Record<string, unknown> {
  const { label: _label, ntml, ...defense } = d;
  return { defense, ntml: { ...(base.ntml ?? {}), ...(ntml ?? {}) } };
}

const budgetLabel = (b: unknown) => (typeof b === 'object' && b ? `${(b as { fraction: number }).fraction * 100}%` : String(b));

/**
 * The local files or folders an evaluation `data` config names (`path`, or an image folder's
 * `train`/`test` `dir` and `labels`), with the field each sits in.
 */
export function dataLocations(data: unknown): Array<{ field: string; location: string }> {
  if (!data || typeof data !== 'object') return [];
  const d = data as Record<string, unknown>;
  const out: Array<{ field: string; location: string }> = [];
  if (typeof d.path === 'string') out.push({ field: 'path', location: d.path });
  for (const split of ['train', 'test']) {
    const s = d[split] as Record<string, unknown> | undefined;
    if (!s || typeof s !== 'object') continue;
    for (const f of ['dir', 'labels']) if (typeof s[f] === 'string') out.push({ field: `${split}.${f}`, location: s[f] as string });
  }
  return out;
}

/** `data` with its locations replaced by their content digest: what a cell id hashes. */
export function locationFreeData(data: Record<string, unknown>, content: string): Record<string, unknown> {
  const { path: _path, train, test, ...rest } = data;
  const split = (s: unknown) => {
    if (!s || typeof s !== 'object') return s;
    const { dir: _dir, labels: _labels, ...own } = s as Record<string, unknown>;
    return own;
  };
  return { ...rest, ...(train !== undefined ? { train: split(train) } : {}), ...(test !== undefined ? { test: split(test) } : {}), content };
}

/**
 * What a cell id depends on besides the spec: `dataContent`, the content digest of the base's
 * data (dataContentFingerprint, computed by a worker that reads the data). Without it the id
 * hashes the data's path as written, as ids did before content digests.
 */
export interface CellIdInputs {
  dataContent?: string;
}

/** A cell's id: the hash of its parsed purify config, the data's location replaced by its content digest when known. */
export function cellId(parsedConfig: Record<string, unknown>, inputs: CellIdInputs = {}): string {
  const data = parsedConfig.data as Record<string, unknown> | undefined;
  const hashed = inputs.dataContent && data && dataLocations(data).length ? { ...parsedConfig, data: locationFreeData(data, inputs.dataContent) } : parsedConfig;
  return stableHash(canonical(hashed));
}

/**
 * The cells of a spec, in a fixed order (attack, defense, model, cleanBudget, seed), each
 * validated as a purify config. Throws ConfigError naming the cell and field, or listing
 * duplicate cells.
 */
export function expandSweep(spec: SweepSpec, idInputs: CellIdInputs = {}): SweepCell[] {
  const g = spec.grid;
  const base = spec.base as Record<string, any>;
  const attacks = g.attack ?? [base.attack];
  // without a defense axis every cell keeps the base's defense (NT-ML when the base names none)
  const defenses: DefenseSpec[] = g.defense ?? [(base.defense as DefenseSpec | undefined) ?? { name: 'ntml' }];
  const models = g.model ?? [base.model];
  const budgets = g.cleanBudget ?? [base.cleanBudget];
  const seeds = g.seed === undefined ? [base.seed ?? 0] : Array.isArray(g.seed) ? g.seed : range(g.seed.from, g.seed.to);
  const cells: SweepCell[] = [];
  const seen = new Map<string, string>();
  const problems: string[] = [];
  for (const attack of attacks)
    for (const defense of defenses)
      for (const model of models)
        for (const cleanBudget of budgets)
          for (const seed of seeds) {
            const config: Record<string, unknown> = {
              ...base,
              ...(attack !== undefined ? { attack } : {}),
              ...(model !== undefined ? { model } : {}),
              ...(cleanBudget !== undefined ? { cleanBudget } : {}),
              seed,
              ...defenseFields(defense, base),
            };
            const axes = {
              attack: String((attack as { name?: string } | undefined)?.name ?? 'none'),
              defense: defenseLabel(defense),
              seed,
              cleanBudget: budgetLabel(cleanBudget ?? 100),
              model: String((model as { arch?: string } | undefined)?.arch ?? (model ? 'custom' : 'tier default')),
            };
            // messages name the tier's model ("ci-tier model"), not the record's placeholder
            const modelShown = axes.model === 'tier default' ? `${String(base.tier ?? 'ci')}-tier model` : axes.model;
            const label = `${axes.attack}/${axes.defense}/${modelShown}/${axes.cleanBudget}/seed ${seed}`;
            const parsed = PurifyConfig.safeParse(config);
            if (!parsed.success) {
              problems.push(...formatIssues(parsed.error).map((i) => `cell ${label}: ${i}`));
              continue;
            }
            const id = cellId(parsed.data as Record<string, unknown>, idInputs);
            const twin = seen.get(id);
            if (twin) {
              problems.push(`cell ${label} duplicates cell ${twin} (same effective config)`);
              continue;
            }
            seen.set(id, label);
            cells.push({ id, axes, config });
          }
  if (problems.length) throw new ConfigError(`sweep ${spec.name} is invalid:\n  ${problems.join('\n  ')}`, problems);
  return cells;
}

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from + 1 }, (_, i) => from + i);
}

export function parseSweepSpec(raw: unknown, source = 'sweep spec'): SweepSpec {
  const r = SweepSpec.safeParse(raw);
  if (!r.success) {
    const issues = formatIssues(r.error);
    throw new ConfigError(`${source} is invalid:\n  ${issues.join('\n  ')}`, issues);
  }
  return r.data;
}

/**
 * The key of the stages a cell shares with others (data, attack, model, training, seed). With
 * `learnedTriggers`, an attack's fields that its learned trigger does not read
 * (LEARNED_TRIGGER_IGNORES: Narcissus' rate and test multiplier) are left out, so cells that
 * differ only in them form one group: the first learns the trigger (hours at the cpu tier) and
 * the rest find it in the learned-trigger cache, instead of each learning it at once.
 */
export function sharedStageKey(config: Record<string, unknown>, opts: { learnedTriggers?: boolean } = {}): string {
  const c = config as Record<string, any>;
  const ignored = (opts.learnedTriggers && typeof c.attack?.name === 'string' && LEARNED_TRIGGER_IGNORES[c.attack.name]) || [];
  const attack = ignored.length ? Object.fromEntries(Object.entries(c.attack as Record<string, unknown>).filter(([k]) => !ignored.includes(k))) : c.attack;
  return stableHash(canonical({ d: c.data, a: attack, b: c.cleanBudget, m: c.model, t: c.training, s: c.seed, tier: c.tier }));
}
