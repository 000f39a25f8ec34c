/**
 * What orchestration costs. Two measurements, each against a local stack it starts itself
 * (Temporal dev server + versitygw) with in-process workers:
 *
 * 1. Overhead: the same cells (ci-tier-sized BadNets runs, no defense: data, standard training,
 *    evaluation) run once by calling the ML core directly in this process, and once as a sweep
 *    at concurrency 1 (child purify workflows, activities, S3 artifacts, stage records). The
 *    ratio sweep / direct is the price of durability.
 * 2. Scaling: sweeps of 10, 100 and 1,000 tiny cells (8x8 images, a few training steps) at a
 *    fixed concurrency: wall time per cell and the history of every run of the sweep workflow
 *    (continue-as-new keeps each run's history bounded, so both should stay flat).
 *
 *   node dist/bench/sweepScaling.js [--sizes 10,100,1000] [--overhead-cells 4] [--concurrency 8] [--out DIR]
 *
 * Writes bench/results/sweep-scaling.json and .md.
 */
// The AWS SDK warns on every start that its 2027 releases need Node 22; not actionable here.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { findRepoRoot } from '../store/repoRoot';
import { startLocalStack } from '../infra/stack';

interface Options {
  sizes: number[];
  overheadCells: number;
  concurrency: number;
  out: string;
}

function parseOptions(argv: string[]): Options {
  const root = findRepoRoot(__dirname) ?? process.cwd();
  const o: Options = { sizes: [10, 100, 1000], overheadCells: 4, concurrency: 8, out: path.join(root, 'bench', 'results') };
  for (let i = 0; i < argv.length; i++) {
    const [flag, value] = [argv[i], argv[i + 1]];
    if (flag === '--sizes') o.sizes = value.split(',').map(Number);
    else if (flag === '--overhead-cells') o.overheadCells = Number(value);
    else if (flag === '--concurrency') o.concurrency = Number(value);
    else if (flag === '--out') o.out = path.resolve(value);
    else throw new Error(`unknown option ${flag} (expected --sizes, --overhead-cells, --concurrency, --out)`);
    i++;
  }
  if (o.sizes.some((n) => !Number.isInteger(n) || n < 1)) throw new Error('--sizes: positive integers, e.g. 10,100,1000');
  return o;
}

/** A ci-sized cell: enough training that the overhead ratio reflects a real (small) run. */
const overheadBase = {
  mode: 'evaluation',
  tier: 'ci',
  data: { format: 'synthetic', trainSize: 1000, testSize: 500 },
  attack: { name: 'badnets' },
  cleanBudget: 50,
  training: { epochs: 3 },
  defense: { name: 'none' },
};

/** A tiny cell: a few training steps on 8x8 images. */
const tinyBase = {
  mode: 'evaluation',
  tier: 'ci',
  data: { format: 'synthetic', trainSize: 40, testSize: 20, height: 8, width: 8, numClasses: 4 },
  attack: { name: 'badnets', patchSize: 2 },
  cleanBudget: 8,
  training: { epochs: 1, batchSize: 16 },
  defense: { name: 'none' },
};

interface OverheadResult {
  cells: number;
  directSeconds: number;
  sweepSeconds: number;
  ratio: number;
}

interface ScalingResult {
  cells: number;
  concurrency: number;
  wallSeconds: number;
  secondsPerCell: number;
  runs: number;
  maxHistoryEvents: number;
  maxHistoryBytes: number;
  totalHistoryEvents: number;
}

async function main() {
  const o = parseOptions(process.argv.slice(2));
  const root = findRepoRoot(__dirname) ?? process.cwd();
  const stackDir = path.join(root, '.ntml', `bench-stack-${process.pid}`);
  const stack = await startLocalStack({ dir: stackDir, log: (m) => console.log(`[stack] ${m}`) });
  Object.assign(process.env, stack.env, { AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' });
  const load0 = os.loadavg()[0];
  const t0 = Date.now();
  try {
    const { Client, Connection } = await import('@temporalio/client');
    const { DefaultLogger, Runtime } = await import('@temporalio/worker');
    Runtime.install({ logger: new DefaultLogger('WARN') });
    const { connectWorker, createOrchestrationWorker, createTrainingWorker } = await import('../workers/createWorkers');
    const connection = await Connection.connect({ address: stack.env.NTML_TEMPORAL_ADDRESS! });
    const client = new Client({ connection });

    const runSweep = async (name: string, base: Record<string, unknown>, cells: number, concurrency: number, slots: number) => {
      const id = `${name}-${Date.now().toString(36)}`;
      const queues = { orchestration: `bench-orch-${id}`, training: `bench-train-${id}` };
      const workerConnection = await connectWorker(stack.env.NTML_TEMPORAL_ADDRESS!);
      const orchestration = await createOrchestrationWorker({ connection: workerConnection, taskQueue: queues.orchestration });
      const training = await createTrainingWorker({ connection: workerConnection, taskQueue: queues.training, slots, shutdownGraceSeconds: 1 });
      const spec = { name: id, base, grid: { seed: { from: 1, to: cells } }, concurrency };
      const started = Date.now();
      await orchestration.runUntil(
        training.runUntil(
          client.workflow.execute('sweep', {
            taskQueue: queues.orchestration,
            workflowId: `sweep-${id}`,
            args: [{ spec, options: { trainingTaskQueue: queues.training } }],
          }),
        ),
      );
      const wallSeconds = (Date.now() - started) / 1000;
      await workerConnection.close();
      // every run of the sweep workflow (the first and each continue-as-new)
      const runs: Array<{ events: number; bytes: number }> = [];
      for await (const wf of client.workflow.list({ query: `WorkflowId = 'sweep-${id}'` })) {
        const d = await client.workflow.getHandle(wf.workflowId, wf.runId).describe();
        runs.push({ events: d.historyLength, bytes: Number(d.historySize ?? 0) });
      }
      return { wallSeconds, runs };
    };

    // 1. overhead: direct core calls vs the same cells through the sweep at concurrency 1
    const overhead: OverheadResult[] = [];
    if (o.overheadCells > 0) {
      const { parsePurifyConfig } = await import('../schemas/purify');
      const { prepareData } = await import('../core/experiment/prepareData');
      const { createClassifier } = await import('../core/models/layersFormat');
      const { trainStandard } = await import('../core/ntml/stages');
      const { evaluateClassifier } = await import('../core/experiment/evaluate');
      const { deriveSeed } = await import('../core/rng');
      const direct0 = Date.now();
      for (let seed = 1; seed <= o.overheadCells; seed++) {
        const cfg = parsePurifyConfig({ ...overheadBase, seed });
        const data = await prepareData(cfg);
        const model = createClassifier('tinyCnn', data.train, data.train.numClasses, deriveSeed(seed, 'init:standard'));
        await trainStandard(model, data.train, cfg.training, seed);
        await evaluateClassifier(model, data.test, data.backdoorTest);
        model.model.dispose();
      }
      const directSeconds = (Date.now() - direct0) / 1000;
      const viaSweep = await runSweep('overhead', overheadBase, o.overheadCells, 1, 1);
      overhead.push({ cells: o.overheadCells, directSeconds, sweepSeconds: viaSweep.wallSeconds, ratio: viaSweep.wallSeconds / directSeconds });
      console.log(`overhead: ${o.overheadCells} cells direct ${directSeconds.toFixed(1)} s, as a sweep ${viaSweep.wallSeconds.toFixed(1)} s`);
    }

    // 2. scaling
    const scaling: ScalingResult[] = [];
    for (const n of o.sizes) {
      const r = await runSweep(`scale${n}`, tinyBase, n, o.concurrency, o.concurrency);
      const result: ScalingResult = {
        cells: n,
        concurrency: o.concurrency,
        wallSeconds: r.wallSeconds,
        secondsPerCell: r.wallSeconds / n,
        runs: r.runs.length,
        maxHistoryEvents: Math.max(...r.runs.map((x) => x.events)),
        maxHistoryBytes: Math.max(...r.runs.map((x) => x.bytes)),
        totalHistoryEvents: r.runs.reduce((a, x) => a + x.events, 0),
      };
      scaling.push(result);
      console.log(`scaling: ${n} cells in ${r.wallSeconds.toFixed(1)} s (${result.secondsPerCell.toFixed(2)} s/cell), ${r.runs.length} runs, max history ${result.maxHistoryEvents} events / ${result.maxHistoryBytes} bytes`);
    }
    await connection.close();

    const meta = {
      measuredAt: new Date().toISOString(),
      command: `node dist/bench/sweepScaling.js --sizes ${o.sizes.join(',')} --overhead-cells ${o.overheadCells} --concurrency ${o.concurrency}`,
      cpu: os.cpus()[0]?.model ?? 'unknown',
      cores: os.availableParallelism(),
      loadAverageStart: load0,
      loadAverageEnd: os.loadavg()[0],
      totalSeconds: (Date.now() - t0) / 1000,
    };
    await fs.mkdir(o.out, { recursive: true });
    await fs.writeFile(path.join(o.out, 'sweep-scaling.json'), `${JSON.stringify({ meta, overhead, scaling }, null, 2)}\n`);
    await fs.writeFile(path.join(o.out, 'sweep-scaling.md'), markdown(meta, overhead, scaling));
    console.log(`wrote ${path.join(o.out, 'sweep-scaling.md')}`);
  } finally {
    await stack.stop();
    await fs.rm(stackDir, { recursive: true, force: true }).catch(() => undefined);
  }
}

function markdown(meta: Record<string, unknown>, overhead: OverheadResult[], scaling: ScalingResult[]): string {
  const lines = [
    '# Orchestration cost',
    '',
    `Measured ${meta.measuredAt} with \`${meta.command}\` (bench/sweepScaling.ts) on ${meta.cpu}, ${meta.cores} cores;`,
    `1-minute load average ${Number(meta.loadAverageStart).toFixed(2)} at the start and ${Number(meta.loadAverageEnd).toFixed(2)} at the end.`,
    // the bench's own Temporal server, S3 server and workers load the machine too: the average alone cannot say who competed
    'The load includes this bench\'s own Temporal dev server, versitygw and in-process workers; a start value above the core count',
    'can also be the decaying average of work that ended just before. Local Temporal dev server and versitygw, in-process workers.',
    '',
    '## Overhead: the same cells called directly vs run as a sweep',
    '',
    'Cells: ci-sized BadNets runs without a defense (1,000 synthetic images, 3 epochs of tinyCnn, evaluation).',
    'Direct: the ML core in one process, nothing stored. Sweep: concurrency 1, child purify workflows, activities,',
    'every artifact written to and verified from S3, stage-cache and cell records.',
    '',
    '| cells | direct s | sweep s | sweep / direct |',
    '|---|---|---|---|',
    ...overhead.map((r) => `| ${r.cells} | ${r.directSeconds.toFixed(1)} | ${r.sweepSeconds.toFixed(1)} | ${r.ratio.toFixed(2)} |`),
    '',
    '## Scaling: tiny cells (8x8 images, a few training steps)',
    '',
    '| cells | concurrency | wall s | s per cell | workflow runs (continue-as-new) | max events per run | max history bytes per run | events in all |',
    '|---|---|---|---|---|---|---|---|',
    ...scaling.map(
      (r) =>
        `| ${r.cells} | ${r.concurrency} | ${r.wallSeconds.toFixed(1)} | ${r.secondsPerCell.toFixed(2)} | ${r.runs} | ${r.maxHistoryEvents} | ${r.maxHistoryBytes} | ${r.totalHistoryEvents} |`,
    ),
    '',
    'Each run of the sweep workflow continues as new when the server suggests it, so the events of one run stay bounded',
    'while the total grows with the number of cells.',
    '',
  ];
  return lines.join('\n');
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
