/**
 * Synthetic completed sweep-cell records for the report tests: configs name their attack and
 * defense as expandSweep's do, so rows, published matches, verdicts and rankings read them as
 * they read a real sweep's.
 */
import type { SweepCellRecord } from '../../core/report/records';

let nextId = 0;
export interface Numbers {
  acc: number;
  asr: number;
  der?: number;
  sAcc?: number;
  sAsr?: number;
  stages?: Array<{ stage: string; seconds: number; cached?: boolean }>;
}
/** A completed cell whose config names its attack and defense like expandSweep's do. */
export function cell(attack: string, defense: string, budget: string, seed: number, m: Numbers, label = defense): SweepCellRecord {
  const id = `t${String(nextId++).padStart(4, '0')}`;
  return {
    sweep: 'table',
    cellId: id,
    axes: { attack, defense: label, seed, cleanBudget: budget, model: 'tier default' },
    config: { attack: { name: attack }, defense: { name: defense } },
    status: 'completed',
    workflowId: `wf-${id}`,
    startedAt: 0,
    endedAt: 60_000,
    metrics: { standard: { acc: m.sAcc ?? 80, asr: m.sAsr ?? 97 }, final: { acc: m.acc, asr: m.asr, ra: 100 - m.asr } },
    der: m.der,
    stages: m.stages ?? [{ stage: 'defense', seconds: 30 }],
  };
}

/** Three seeds of one group: `der` and `acc` centred on the given means with the given spread. */
export function group(attack: string, defense: string, budget: string, der: number, derSpread: number, acc: number, label = defense): SweepCellRecord[] {
  return [101, 102, 103].map((seed, i) => cell(attack, defense, budget, seed, { acc: acc + (i - 1), asr: 5, der: der + (i - 1) * derSpread }, label));
}

