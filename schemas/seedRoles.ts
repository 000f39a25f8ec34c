/**
 * Seed roles (protocol): dev seeds serve every screen, ablation and choice of defaults;
 * report seeds serve the published tables and nothing is tuned on them. The role is a
 * property of the seed's value, so a stored cell says which role it played without any
 * other record: seeds below REPORT_SEEDS_FROM are dev seeds, the rest report seeds.
 * Pure (no I/O): the sweep schema, which workflows import, uses it.
 */

export type SeedRole = 'dev' | 'report';
export const SEED_ROLES: readonly SeedRole[] = ['dev', 'report'];

/** The first report seed value; the protocol's report seeds are 101-103, its dev seeds 1-3. */
export const REPORT_SEEDS_FROM = 100;

export function seedRoleOf(seed: number): SeedRole {
  return seed >= REPORT_SEEDS_FROM ? 'report' : 'dev';
}

/** What a role's seeds look like, for error messages. */
export function seedRoleRange(role: SeedRole): string {
  return role === 'report' ? `report seeds are ${REPORT_SEEDS_FROM} or above (e.g. 101-103)` : `dev seeds are below ${REPORT_SEEDS_FROM} (e.g. 1-3)`;
}

/** The seeds among `seeds` that do not play `role`, ascending and distinct. */
export function seedsOutsideRole(seeds: Iterable<number>, role: SeedRole): number[] {
  return [...new Set([...seeds].filter((s) => seedRoleOf(s) !== role))].sort((a, b) => a - b);
}

export class SeedRoleError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SeedRoleError';
  }
}

/**
 * The one role that all `seeds` of a table play. Throws SeedRoleError when they mix roles,
 * or when `expected` is given and they do not play it (a report table refuses dev-seed
 * cells: their numbers informed the choices the table is meant to test). Undefined for no seeds.
 */
export function tableSeedRole(seeds: number[], what: string, expected?: SeedRole): SeedRole | undefined {
  const dev = seedsOutsideRole(seeds, 'report');
  const report = seedsOutsideRole(seeds, 'dev');
  if (dev.length && report.length) {
    throw new SeedRoleError(
      `${what} mixes dev seeds (${dev.join(', ')}) and report seeds (${report.join(', ')}) in one table; ` +
        `${seedRoleRange('dev')}, ${seedRoleRange('report')}: report each role in its own table`,
    );
  }
  const role: SeedRole | undefined = dev.length ? 'dev' : report.length ? 'report' : undefined;
  if (expected && role && role !== expected) {
    const wrong = role === 'dev' ? dev : report;
    throw new SeedRoleError(
      expected === 'report'
        ? `${what} is a report-seed table but has dev-seed cells (seeds ${wrong.join(', ')}); ${seedRoleRange('report')}, and nothing may be tuned on them`
        : `${what} is a dev-seed table but has report-seed cells (seeds ${wrong.join(', ')}); ${seedRoleRange('dev')}: screens and choices never use report seeds`,
    );
  }
  return role ?? expected;
}
