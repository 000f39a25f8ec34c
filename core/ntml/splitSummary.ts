/** A split plan as the report and the sweep records keep it. */
import type { SplitSummary } from '../report/records';
import type { SplitPlan } from './stages';

export function splitSummary(plan: SplitPlan): SplitSummary {
  return {
    estimatedTarget: plan.estimatedTarget,
    keptFraction: plan.keptFraction,
    ...(plan.tiedClasses && plan.tiedClasses.length > 1 ? { tiedClasses: plan.tiedClasses } : {}),
    excessShare: plan.evidence.excessShare,
    suspectedCount: plan.evidence.suspectedCount,
    ...(plan.evidence.overPrediction === undefined ? {} : { overPrediction: plan.evidence.overPrediction }),
    ...(plan.evidence.fallback ? { fallback: plan.evidence.fallback } : {}),
  };
}
