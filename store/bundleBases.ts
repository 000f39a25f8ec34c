/**
 * Bundles exported against base bundles (docs/bundles.md, "Bases"): what a base already carries
 * (an artifact by sha256, a record by key) is left out of the dependent bundle, and the
 * dependent's manifest names each base with what it relies on (`selection.bases`). The benchmark's
 * specs share their backdoored models (bench/state/README.md), so each bundle after the first
 * would otherwise carry them again.
 *
 * A base's stages in progress are never relied on: they leave the base as soon as the stage ends
 * (its cache entry replaces them), which would strand every dependent. The dependent carries
 * those itself.
 *
 * Cycles: a bundle relies on its bases, which must be imported first, so a base exported against
 * one of its dependents would leave out what the dependent leaves out, and neither could be
 * imported. `assertNoCycle` refuses such an export (following the bases' own manifests); the
 * benchmark also exports in one fixed order (bench/run-cpu.sh), each spec against earlier ones.
 */
import type { BundleContent } from './bundle';
import { StoreError } from './errors';
import { isSha256 } from './keys';

/** An export against bases that would form a cycle. */
export class BundleBaseError extends StoreError {}

/** What a dependent's manifest says about one base: the base's file name and what it relies on. */
export interface BundleBaseReliance {
  /** the base bundle's file name (no folder: the bundles move between machines together) */
  bundle: string;
  /** the sweep the base holds, when its manifest names one */
  sweep?: string;
  /** sha256s of the artifacts left out because the base carries them */
  artifacts: string[];
  /** records left out because the base carries them (the dependent's own content's sha256) */
  records: Array<{ key: string; sha256: string }>;
}

/** A base bundle, decoded, with the file name dependents will name it by. */
export interface NamedBundle {
  name: string;
  content: BundleContent;
}

/** The relied-on list of a manifest's selection (`bases`), or [] when it names none. */
export function basesOf(selection: Record<string, unknown>): BundleBaseReliance[] {
  return Array.isArray(selection.bases) ? (selection.bases as BundleBaseReliance[]) : [];
}

/** A manifest's `bases` that is not as written by leaveOutBases, described; undefined when fine. */
export function basesProblem(bases: unknown): string | undefined {
  if (bases === undefined) return undefined;
  if (!Array.isArray(bases)) return 'selection.bases must be an array';
  for (const [i, b] of bases.entries()) {
    const o = b as Partial<BundleBaseReliance> | null;
    if (!o || typeof o.bundle !== 'string' || o.bundle === '' || o.bundle.includes('/')) return `selection.bases[${i}].bundle must be a file name`;
    if (!Array.isArray(o.artifacts) || !o.artifacts.every(isSha256)) return `selection.bases[${i}].artifacts must be sha256s`;
    if (!Array.isArray(o.records) || !o.records.every((r) => r && typeof r.key === 'string' && isSha256(r.sha256))) return `selection.bases[${i}].records must be {key, sha256}`;
  }
  return undefined;
}

/** What dependents may rely on a base for: every artifact and record except its stages in progress. */
export function baseCarries(base: BundleContent): { artifacts: Set<string>; records: Set<string> } {
  const inProgress = Array.isArray(base.manifest.selection.inProgress) ? (base.manifest.selection.inProgress as Array<{ record?: string; sha256?: string }>) : [];
  const volatileArtifacts = new Set(inProgress.map((c) => c.sha256));
  const volatileRecords = new Set(inProgress.map((c) => c.record));
  return {
    artifacts: new Set(base.manifest.artifacts.map((a) => a.sha256).filter((s) => !volatileArtifacts.has(s))),
    records: new Set(base.manifest.records.map((r) => r.key).filter((k) => !volatileRecords.has(k))),
  };
}

/**
 * `content` without what `bases` carry, its manifest naming each base and what it relies on
 * (only bases relied on for something are named). A record or artifact two bases carry is
 * relied on from the first.
 */
export function leaveOutBases(content: BundleContent, bases: NamedBundle[]): BundleContent {
  if (bases.length === 0) return content;
  const reliance: BundleBaseReliance[] = [];
  const taken = { artifacts: new Set<string>(), records: new Set<string>() };
  for (const base of bases) {
    const carries = baseCarries(base.content);
    const sweep = base.content.manifest.selection.sweep;
    const r: BundleBaseReliance = { bundle: base.name, ...(typeof sweep === 'string' ? { sweep } : {}), artifacts: [], records: [] };
    for (const a of content.manifest.artifacts) {
      if (carries.artifacts.has(a.sha256) && !taken.artifacts.has(a.sha256)) {
        taken.artifacts.add(a.sha256);
        r.artifacts.push(a.sha256);
      }
    }
    for (const rec of content.manifest.records) {
      if (carries.records.has(rec.key) && !taken.records.has(rec.key)) {
        taken.records.add(rec.key);
        r.records.push({ key: rec.key, sha256: rec.sha256 });
      }
    }
    if (r.artifacts.length || r.records.length) reliance.push(r);
  }
  const records = content.records.filter((r) => !taken.records.has(r.key));
  const artifacts = content.artifacts.filter((a) => !taken.artifacts.has(a.sha256));
  return {
    manifest: {
      ...content.manifest,
      selection: { ...content.manifest.selection, bases: reliance },
      records: content.manifest.records.filter((r) => !taken.records.has(r.key)),
      artifacts: content.manifest.artifacts.filter((a) => !taken.artifacts.has(a.sha256)),
    },
    records,
    artifacts,
  };
}

/**
 * Refuses to export `name` against a base that relies on `name`, directly or through its own
 * bases. `open` reads a bundle by file name (undefined when there is none: its bases cannot be
 * followed, and an absent bundle relies on nothing).
 */
export async function assertNoCycle(name: string, bases: NamedBundle[], open: (file: string) => Promise<BundleContent | undefined>): Promise<void> {
  for (const base of bases) {
    const path: string[] = [name, base.name];
    const seen = new Set<string>();
    const walk = async (content: BundleContent, trail: string[]): Promise<void> => {
      for (const dep of basesOf(content.manifest.selection)) {
        if (dep.bundle === name) {
          throw new BundleBaseError(`cannot export ${name} against ${base.name}: ${[...trail, dep.bundle].join(' relies on ')}, so the bases would form a cycle and neither could be imported first`);
        }
        if (seen.has(dep.bundle)) continue;
        seen.add(dep.bundle);
        const next = await open(dep.bundle);
        if (next) await walk(next, [...trail, dep.bundle]);
      }
    };
    if (base.name === name) throw new BundleBaseError(`cannot export ${name} against itself`);
    await walk(base.content, path.slice(1));
  }
}

/**
 * Problems of a set of bundles that rely on each other (bench/state): a base that is not there,
 * an artifact or record a bundle relies on that its base no longer carries (the base was exported
 * again without it), and a cycle. Empty when every bundle can be imported after its bases.
 */
export function bundleSetProblems(bundles: NamedBundle[]): Array<{ bundle: string; message: string }> {
  const byName = new Map(bundles.map((b) => [b.name, b]));
  const problems: Array<{ bundle: string; message: string }> = [];
  for (const b of bundles) {
    for (const dep of basesOf(b.content.manifest.selection)) {
      const base = byName.get(dep.bundle);
      if (!base) {
        problems.push({ bundle: b.name, message: `${b.name} relies on the base ${dep.bundle}, which is not there` });
        continue;
      }
      const carries = baseCarries(base.content);
      const artifacts = dep.artifacts.filter((s) => !carries.artifacts.has(s));
      const records = dep.records.filter((r) => !carries.records.has(r.key));
      if (artifacts.length || records.length) {
        const first = artifacts.length ? `artifact ${artifacts[0]}` : `record ${records[0].key}`;
        problems.push({
          bundle: b.name,
          message:
            `${b.name} relies on ${artifacts.length} artifacts and ${records.length} records that its base ${dep.bundle} no longer carries (first: ${first}): ` +
            `export ${b.name} again against the current ${dep.bundle}, from a store that still holds them (the one ${dep.bundle} was just exported from, after importing ${b.name})`,
        });
      }
    }
  }
  // a cycle: some bundle reaches itself through its bases
  const state = new Map<string, 'open' | 'done'>();
  const visit = (name: string, trail: string[]): void => {
    if (state.get(name) === 'done') return;
    if (state.get(name) === 'open') {
      problems.push({ bundle: name, message: `the bases form a cycle: ${[...trail.slice(trail.indexOf(name)), name].join(' relies on ')}` });
      return;
    }
    state.set(name, 'open');
    for (const dep of basesOf(byName.get(name)?.content.manifest.selection ?? {})) if (byName.has(dep.bundle)) visit(dep.bundle, [...trail, name]);
    state.set(name, 'done');
  };
  for (const b of bundles) visit(b.name, []);
  return problems;
}
