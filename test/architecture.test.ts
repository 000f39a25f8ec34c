/**
 * Architecture rules, checked on the TypeScript sources and on the real workflow bundle:
 * - the workflow bundle (what bundleWorkflowCode builds from workflows/index.ts) reaches
 *   only the workflow SDK and its dependencies, zod, the workflow modules, the contract and
 *   a named list of pure modules (zod schemas and pure functions: no Node, no TensorFlow);
 * - no import cycles between top-level folders, nor between the modules of core/attacks;
 * - no require tricks (eval('require'), computed require paths) that hide a module from the
 *   bundler or from this scan.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, existsSync } from 'node:fs';
import * as path from 'node:path';
import { bundleWorkflowCode } from '@temporalio/worker';

const repo = path.resolve(__dirname, '..', '..');
const SOURCE_FOLDERS = ['core', 'store', 'schemas', 'activities', 'workflows', 'workers', 'cli', 'telemetry', 'infra'];

/**
 * Project modules the workflow bundle may contain besides workflows/*: pure zod schemas and
 * pure functions. Each imports nothing but zod and modules of this list (the bundle walk
 * below checks that, transitively).
 */
const PURE_WORKFLOW_MODULES = [
  'schemas/purify',
  'schemas/sweep',
  'schemas/audit',
  'schemas/seedRoles',
  'schemas/location',
  'core/attacks/configs',
  'core/defenses/configs',
  'core/ntml/config',
  'core/train/recipe',
  'core/models/names',
  // pure functions the workflows call: the NT-ML step order and the DER formula
  'core/ntml/steps',
  'core/metrics',
  // the audit workflow's verdict and history key (pure functions, types only from elsewhere)
  'core/audit/verdict',
  'core/audit/history',
];

/** The pure schema layer: schemas/* and the zod config modules that live next to their code. */
const SCHEMA_LAYER = new Set(PURE_WORKFLOW_MODULES.filter((m) => m.startsWith('schemas/') || /\/(configs|config|recipe|names)$/.test(m)));
const CONTRACT = 'workflows/contract';

interface Edge {
  from: string;
  to: string;
  typeOnly: boolean;
}

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(path.join(repo, dir), { withFileTypes: true })) {
    const rel = path.posix.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...sourceFiles(rel));
    else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts')) out.push(rel);
  }
  return out;
}

/** A relative import resolved to a module id (repo-relative path without `.ts`), or undefined for a package. */
function resolve(fromFile: string, spec: string): string | undefined {
  if (!spec.startsWith('.')) return undefined;
  const base = path.posix.normalize(path.posix.join(path.posix.dirname(fromFile), spec));
  if (existsSync(path.join(repo, `${base}.ts`))) return base;
  if (existsSync(path.join(repo, base, 'index.ts'))) return `${base}/index`;
  // data files read at run time (package.json for the version) are no module of ours
  if (/\.json$/.test(spec)) return undefined;
  throw new Error(`${fromFile}: cannot resolve import ${JSON.stringify(spec)}`);
}

const STATIC_IMPORT = /^\s*(import|export)\s+(type\s+)?(?:[^'";]*?\sfrom\s+)?['"]([^'"]+)['"]/gm;
const DYNAMIC_IMPORT = /\b(?:import|require)\(\s*['"]([^'"]+)['"]\s*\)/g;

function importEdges(): Edge[] {
  const edges: Edge[] = [];
  for (const file of SOURCE_FOLDERS.flatMap(sourceFiles)) {
    const text = readFileSync(path.join(repo, file), 'utf8');
    const from = file.replace(/\.ts$/, '');
    for (const m of text.matchAll(STATIC_IMPORT)) {
      const to = resolve(file, m[3]);
      if (to) edges.push({ from, to, typeOnly: Boolean(m[2]) });
    }
    for (const m of text.matchAll(DYNAMIC_IMPORT)) {
      const to = resolve(file, m[1]);
      if (to) edges.push({ from, to, typeOnly: false });
    }
  }
  return edges;
}

/** The first cycle found in a directed graph, as a path that ends where it starts, or undefined. */
function findCycle(nodes: Iterable<string>, next: (n: string) => Iterable<string>): string[] | undefined {
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const visit = (n: string): string[] | undefined => {
    state.set(n, 'open');
    stack.push(n);
    for (const m of next(n)) {
      if (state.get(m) === 'open') return [...stack.slice(stack.indexOf(m)), m];
      if (!state.has(m)) {
        const found = visit(m);
        if (found) return found;
      }
    }
    stack.pop();
    state.set(n, 'done');
    return undefined;
  };
  for (const n of nodes) {
    if (state.has(n)) continue;
    const found = visit(n);
    if (found) return found;
  }
  return undefined;
}

function graph(edges: Edge[], node: (module: string) => string | undefined): Map<string, Map<string, Edge>> {
  const g = new Map<string, Map<string, Edge>>();
  for (const e of edges) {
    const a = node(e.from);
    const b = node(e.to);
    if (a === undefined || b === undefined || a === b) continue;
    if (!g.has(a)) g.set(a, new Map());
    if (!g.get(a)!.has(b)) g.get(a)!.set(b, e);
  }
  return g;
}

function describeCycle(cycle: string[], g: Map<string, Map<string, Edge>>): string {
  return cycle
    .slice(1)
    .map((b, i) => {
      const e = g.get(cycle[i])!.get(b)!;
      return `${cycle[i]} -> ${b} (${e.from} imports ${e.to}${e.typeOnly ? ', type only' : ''})`;
    })
    .join('\n  ');
}

/**
 * A module's layer: its top-level folder, except that the contract and the pure schema
 * layer (schemas/* and the zod config modules) are layers of their own: everyone may import
 * them, and they import only each other (and, for the contract, types).
 */
function layer(module: string): string {
  if (module === CONTRACT) return 'contract';
  if (SCHEMA_LAYER.has(module)) return 'schemas';
  return module.split('/')[0];
}

test('no import cycles between top-level folders (type-only imports included)', () => {
  const edges = importEdges();
  const g = graph(edges, layer);
  const cycle = findCycle(g.keys(), (n) => g.get(n)?.keys() ?? []);
  assert.equal(cycle, undefined, cycle && `folder cycle:\n  ${describeCycle(cycle, g)}`);
  // the contract holds constants and types: what it imports from elsewhere is types only
  const contractRuntime = edges.filter((e) => e.from === CONTRACT && !e.typeOnly);
  assert.deepEqual(contractRuntime, [], 'the contract imports types only');
  assert.ok(!edges.some((e) => e.from.startsWith('core/') && e.to.startsWith('workflows/')), 'core never imports workflow modules');
});

test('no import cycles between the modules of core/attacks', () => {
  const edges = importEdges();
  const g = graph(edges, (m) => (m.startsWith('core/attacks/') ? m : undefined));
  assert.ok(g.size >= 8, `the scan sees core/attacks' imports (${g.size} modules with imports)`);
  const cycle = findCycle(g.keys(), (n) => g.get(n)?.keys() ?? []);
  assert.equal(cycle, undefined, cycle && `cycle in core/attacks:\n  ${describeCycle(cycle, g)}`);
  // the registry is the only place that lists plugins: no plugin imports it back
  const intoRegistry = edges.filter((e) => e.to === 'core/attacks/registry' && e.from.startsWith('core/attacks/'));
  assert.deepEqual(
    intoRegistry.map((e) => e.from).sort(),
    ['core/attacks/poisonMeta', 'core/attacks/preview', 'core/attacks/testSet'],
    'only the modules that look attacks up by name import the registry',
  );
});

test('the cycle finder catches a cycle (the two tests above have teeth)', () => {
  const edges: Edge[] = [
    { from: 'core/x', to: 'workflows/y', typeOnly: true },
    { from: 'workflows/y', to: 'core/z', typeOnly: false },
  ];
  const g = graph(edges, layer);
  assert.deepEqual(findCycle(g.keys(), (n) => g.get(n)?.keys() ?? []), ['core', 'workflows', 'core']);
});

test('no require tricks in core, schemas or workflows', () => {
  const files = ['core', 'schemas', 'workflows'].flatMap(sourceFiles);
  const tricks = files.flatMap((file) => {
    const text = readFileSync(path.join(repo, file), 'utf8');
    const found: string[] = [];
    if (/\beval\s*\(/.test(text)) found.push(`${file}: eval(`);
    for (const m of text.matchAll(/\brequire\(\s*([^)]*)\)/g)) {
      if (!/^['"][^'"]+['"]$/.test(m[1].trim())) found.push(`${file}: require(${m[1]})`);
    }
    return found;
  });
  // core/tf.ts picks the TensorFlow package (CPU or GPU build) by name at startup: the one allowed
  assert.deepEqual(tricks.filter((t) => !t.startsWith('core/tf.ts:')), []);
});

/** Every package a package depends on at run time, itself included (node's lookup: nested node_modules first). */
function packageClosure(name: string, fromDir = repo, seen = new Set<string>()): Set<string> {
  if (seen.has(name)) return seen;
  seen.add(name);
  let dir = fromDir;
  while (!existsSync(path.join(dir, 'node_modules', name, 'package.json'))) {
    if (dir === repo || dir === path.dirname(dir)) throw new Error(`package ${name} is not installed (looked up from ${fromDir})`);
    dir = path.dirname(dir);
  }
  const pkgDir = path.join(dir, 'node_modules', name);
  const pkg = JSON.parse(readFileSync(path.join(pkgDir, 'package.json'), 'utf8')) as { dependencies?: Record<string, string> };
  for (const dep of Object.keys(pkg.dependencies ?? {})) packageClosure(dep, pkgDir, seen);
  return seen;
}

/** The package a node_modules path belongs to (`@scope/name` or `name`). */
function packageOf(file: string): string {
  const rest = file.slice(file.lastIndexOf('node_modules/') + 'node_modules/'.length).split('/');
  return rest[0].startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0];
}

test('the workflow bundle reaches only the workflow SDK, zod, the workflows, the contract and pure modules', { timeout: 180_000 }, async () => {
  const resources: string[] = [];
  await bundleWorkflowCode({
    workflowsPath: path.join(repo, 'dist', 'workflows', 'index.js'),
    logger: { log: () => undefined, trace: () => undefined, debug: () => undefined, info: () => undefined, warn: () => undefined, error: (m: string) => console.error(m) },
    webpackConfigHook: (config) => {
      config.plugins = [
        ...(config.plugins ?? []),
        {
          apply(compiler) {
            compiler.hooks.done.tap('ntml-module-list', (stats) => {
              for (const m of stats.compilation.modules) {
                const resource = (m as { resource?: string }).resource;
                if (resource) resources.push(resource.split('?')[0]);
              }
            });
          },
        },
      ];
      return config;
    },
  });
  assert.ok(resources.length > 0, 'the bundler reported its modules');

  const allowedPackages = new Set([...packageClosure('@temporalio/workflow'), 'zod']);
  const dist = path.join(repo, 'dist') + path.sep;
  const project = new Set<string>();
  const outside: string[] = [];
  for (const file of resources) {
    if (file.includes(`${path.sep}node_modules${path.sep}`)) {
      if (!allowedPackages.has(packageOf(file.split(path.sep).join('/')))) outside.push(file);
    } else if (file.startsWith(dist)) {
      project.add(file.slice(dist.length).replace(/\.js$/, '').split(path.sep).join('/'));
    } else if (!/temporal-bundle|workflow-bundle|[\\/]tmp[\\/]/i.test(file)) {
      outside.push(file);
    }
  }
  const allowedProject = (m: string) => m.startsWith('workflows/') || PURE_WORKFLOW_MODULES.includes(m);
  const disallowed = [...project].filter((m) => !allowedProject(m)).sort();
  assert.deepEqual(disallowed, [], `project modules in the workflow bundle that are neither workflows nor pure:\n  ${disallowed.join('\n  ')}`);
  assert.deepEqual(outside, [], 'packages in the workflow bundle beyond @temporalio/workflow (and its dependencies) and zod');
  // the walk saw the real graph: the workflows, the contract and the attack configs are in it
  for (const m of ['workflows/purify', 'workflows/sweep', CONTRACT, 'schemas/purify', 'core/attacks/configs', 'core/ntml/steps']) {
    assert.ok(project.has(m), `${m} is in the bundle`);
  }
  assert.ok(![...project].some((m) => m.startsWith('core/attacks/') && m !== 'core/attacks/configs'), 'no attack code in the bundle');
});
