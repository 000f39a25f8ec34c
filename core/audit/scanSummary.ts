/**
 * The Neural-Cleanse scan's summary from its per-class reversed triggers: the MAD anomaly
 * index of their mask norms, the flagged classes and NC's candidate target. Pure.
 *
 * Only a trigger that reached the success threshold while being minimised is a minimal
 * trigger; the masks of a scan stopped before that (too small a budget) are no evidence
 * either way, so they are neither flagged nor a candidate.
 */
import type { ncOptionsOf } from '../../schemas/audit';
import { anomalyIndices } from './neuralCleanse';
import type { NcClassSummary, NcSummary } from './report';

/** What the scan keeps per finished class (heartbeat details carry these across retries). */
export type NcClassDone = Omit<NcClassSummary, 'anomalyIndex' | 'flagged'>;

/** JSON has no Infinity: an index of 1e6 stands for "MAD is 0 and the norm differs from the median". */
const finiteIndex = (v: number) => (Number.isFinite(v) ? v : 1e6);

export function summarizeScan(classes: NcClassDone[], o: ReturnType<typeof ncOptionsOf>, seconds: number): NcSummary {
  const anomaly = anomalyIndices(
    classes.map((c) => c.maskL1),
    o.anomalyThreshold,
  );
  const works = (c: NcClassDone) => c.reachedThreshold && c.attackSuccessRate >= 100 * o.attackSuccessThreshold;
  const flagged = anomaly.flagged.filter((k) => works(classes[k]));
  const candidates = classes.filter(works);
  return {
    stepsPerClass: o.stepsPerClass,
    batchSize: o.batchSize,
    cost: o.cost.mode === 'fixed' ? `fixed ${o.cost.value}` : `schedule from ${o.cost.initial}`,
    seed: o.seed,
    anomalyThreshold: o.anomalyThreshold,
    attackSuccessThreshold: 100 * o.attackSuccessThreshold,
    median: anomaly.median,
    mad: anomaly.mad,
    flagged,
    smallestClass: candidates.length ? candidates.reduce((best, c) => (c.maskL1 < best.maskL1 ? c : best)).targetClass : undefined,
    classes: classes.map((c) => ({ ...c, anomalyIndex: finiteIndex(anomaly.indices[c.targetClass]), flagged: flagged.includes(c.targetClass) })),
    seconds,
  };
}
