/** The human-readable purify report: one table of the models, one of the stages. */
import type { PurifyReport, Metrics, SplitSummary } from './records';
import type { EpochRecord } from '../train/epochLoop';
import { HIGH_PROXY_ASR } from '../ntml/splitDiagnostics';

const pct = (v: number | undefined) => (v === undefined || Number.isNaN(v) ? '-' : v.toFixed(1));

/** t^ and the kept share; a tie says which classes t^ was drawn among (a draw is not an estimate). */
export function splitLine(split: SplitSummary): string {
  const kept = `distilled on ${(100 * split.keptFraction).toFixed(1)}% of the training inputs.`;
  const tied = split.tiedClasses ?? [];
  if (tied.length > 1) return `Split distillation: t^ = ${split.estimatedTarget}, drawn among tied classes ${tied.join(', ')}; ${kept}`;
  return `Split distillation: estimated target class ${split.estimatedTarget}, ${kept}`;
}

export function purifyMarkdown(r: PurifyReport): string {
  const row = (label: string, m: Metrics | undefined) =>
    m === undefined
      ? ''
      : `| ${label} | ${pct(m.acc)} | ${pct(m.asr)} | ${pct(m.ra)} | ${pct(m.meanTrueClassProbabilityOnTriggered)} |`;
  const protection = r.mode === 'protection';
  const lines = [
    `# ${r.defense} purification report${r.name ? `: ${r.name}` : ''}`,
    '',
    `- run: \`${r.runId}\` (${r.mode} mode, seed ${r.seed}, backend ${r.backend})`,
    `- data: ${r.data.source}; ${r.data.trainSize} training images (${protection ? 'poisoning unknown' : `${r.data.poisonedCount} poisoned`}), clean set ${r.data.cleanBudget} (${r.data.cleanFit} fit + ${r.data.cleanHeldOut} held out${r.data.cleanSetOutsideTraining ? `; drawn first from a ${r.data.cleanReserve}-image clean reserve that is not part of the training set` : ''}), ${r.data.testSize} test images${r.data.triggerReusedFrom ? `; poisoned with ${r.data.triggerReusedFrom}, not optimised again` : ''}`,
    r.attack ? `- attack: ${r.attack}` : '- attack: unknown (protection mode; ASR only for known-trigger probes)',
    '',
    '| model | ACC % | ASR % | RA % | p(true) on triggered % |',
    '|---|---|---|---|---|',
    // protection mode knows nothing of a backdoor: f_std is what standard training made of the user's data
    row(protection ? 'standard model f_std (your training set; backdoor unknown)' : 'backdoored (standard training)', r.metrics.standard),
    ...(r.metrics.ntStudent ? [row('NT student (after non-target training)', r.metrics.ntStudent)] : []),
    ...(r.metrics.teacher ? [row('teacher (after mutual learning)', r.metrics.teacher)] : []),
    row(r.defense === 'NT-ML' ? '**purified student (final)**' : `**defended by ${r.defense} (final)**`, r.metrics.final),
    '',
    r.der !== undefined ? `DER: **${r.der.toFixed(1)}** (50 = no effect, 100 = backdoor removed at no accuracy cost)` : '',
    ...splitLines(r),
    r.refit
      ? `Refit on all of the clean set: mutual learning for ${r.refit.mlEpochs} epochs` +
        (r.refit.splitEpochs === undefined ? '' : ` and split distillation for ${r.refit.splitEpochs}`) +
        ' (the epochs the held-out selection chose; the split line above is the refit run\'s).'
      : '',
    r.defenseDetails
      ? `${r.defense} details: ${Object.entries(r.defenseDetails)
          .map(([k, v]) => `${k} ${Array.isArray(v) ? `[${v.join(', ')}]` : typeof v === 'number' && !Number.isInteger(v) ? v.toFixed(3) : v}`)
          .join(', ')}`
      : '',
    `Selection rule: ${r.selectionRule}`,
    '',
    '| stage | wall time (s) | resumed from epoch | reused from cache |',
    '|---|---|---|---|',
    ...r.stages.map(
      (s) => `| ${s.stage} | ${s.seconds.toFixed(1)} | ${s.resumedFromEpoch ? s.resumedFromEpoch : '-'} | ${s.cached ? 'yes' : '-'} |`,
    ),
  ];
  lines.push(...splitEpochTable(r.histories.splitDistillation));
  if (r.skippedCheckpoints.length) {
    lines.push('', 'Checkpoints that failed verification and were skipped:', ...r.skippedCheckpoints.map((s) => `- ${s}`));
  }
  return lines.filter((l, i, a) => !(l === '' && a[i - 1] === '')).join('\n') + '\n';
}

const share = (v: number | undefined) => (v === undefined ? '-' : (100 * v).toFixed(1));

/**
 * The proxy ASR of the split epoch that was kept: the refit's last epoch, else the best-scored
 * epoch when a selection scored them (the start, with its proxy ASR 0 by construction, may
 * have won: then undefined), else the last.
 */
function keptProxyAsr(r: PurifyReport): number | undefined {
  const h = r.histories.splitDistillationRefit ?? r.histories.splitDistillation;
  if (!h?.length) return undefined;
  let kept = h[h.length - 1];
  if (!r.histories.splitDistillationRefit && h.every((e) => e.score !== undefined)) {
    kept = h.reduce((best, e) => (e.score! > best.score! ? e : best));
  }
  return kept.diagnostics?.proxyAsr;
}

/** What split distillation did, and the flags a user must see: a skipped split stage, a high proxy ASR. */
function splitLines(r: PurifyReport): string[] {
  if (!r.split) return [];
  const s = r.split;
  const evidence =
    s.excessShare === undefined
      ? ''
      : ` Evidence: f_std's excess for t^ ${share(s.excessShare)}% of the training inputs; ${s.suspectedCount} suspected-poisoned inputs` +
        (s.overPrediction === undefined ? '.' : `; f_std's over-prediction of t^ beyond the clean set ${share(s.overPrediction)}%.`);
  if (s.fallback || s.keptFraction === 0) {
    return [
      `Split distillation: **skipped**, estimated target class ${s.estimatedTarget}: ${s.fallback ?? 'no training input kept'}.${evidence}`,
      `**Warning: split distillation was skipped; the purified student is the model after mutual learning alone.**` +
        (r.mode === 'protection' ? ' Without a known trigger nothing here shows whether a backdoor was present or removed.' : ''),
    ];
  }
  const lines = [`${splitLine(s)}${evidence}`];
  const proxy = keptProxyAsr(r);
  if (proxy !== undefined && proxy > HIGH_PROXY_ASR) {
    lines.push(
      `**Warning: the purified student sends ${share(proxy)}% of the suspected-poisoned training inputs to class ${s.estimatedTarget} ` +
        `(proxy ASR above ${share(HIGH_PROXY_ASR)}%): split distillation may have brought a backdoor back.**`,
    );
  }
  return lines;
}

/** Per split epoch: where the target's t^ mass comes from (kept inputs) and the student's proxy ASR. */
function splitEpochTable(history: EpochRecord[] | undefined): string[] {
  if (!history?.some((e) => e.diagnostics?.targetMass !== undefined)) return [];
  const d = (e: EpochRecord, k: string) => share(e.diagnostics?.[k]);
  return [
    '',
    'Split distillation per epoch (training inputs only, no test data): mean t^ probability of the distillation target on the kept inputs ' +
      '(clean, WaNet noise-mode and poisoned ones where known), and the proxy ASR: the share of suspected-poisoned inputs ' +
      '(labelled t^, assigned to t^ by f_std, not by the model after mutual learning) the student sends to t^.',
    '',
    '| epoch | t^ mass, kept % | clean % | noise % | poisoned % | suspected | proxy ASR % |',
    '|---|---|---|---|---|---|---|',
    ...history.map(
      (e) =>
        `| ${e.epoch} | ${d(e, 'targetMass')} | ${d(e, 'targetMassClean')} | ${d(e, 'targetMassNoise')} | ${d(e, 'targetMassPoisoned')} | ${e.diagnostics?.suspected ?? '-'} | ${d(e, 'proxyAsr')} |`,
    ),
  ];
}
