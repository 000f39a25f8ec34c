/** The human-readable purify report: one table of the models, one of the stages. */
import type { PurifyReport, Metrics } from './records';

const pct = (v: number | undefined) => (v === undefined || Number.isNaN(v) ? '-' : v.toFixed(1));

export function purifyMarkdown(r: PurifyReport): string {
  const row = (label: string, m: Metrics | undefined) =>
    m === undefined
      ? ''
      : `| ${label} | ${pct(m.acc)} | ${pct(m.asr)} | ${pct(m.ra)} | ${pct(m.meanTrueClassProbabilityOnTriggered)} |`;
  const lines = [
    `# ${r.defense} purification report${r.name ? `: ${r.name}` : ''}`,
    '',
    `- run: \`${r.runId}\` (${r.mode} mode, seed ${r.seed}, backend ${r.backend})`,
    `- data: ${r.data.source}; ${r.data.trainSize} training images (${r.data.poisonedCount} poisoned), clean set ${r.data.cleanBudget} (${r.data.cleanFit} fit + ${r.data.cleanHeldOut} held out${r.data.cleanSetOutsideTraining ? `; drawn first from a ${r.data.cleanReserve}-image clean reserve that is not part of the training set` : ''}), ${r.data.testSize} test images`,
    r.attack ? `- attack: ${r.attack}` : '- attack: unknown (protection mode; ASR only for known-trigger probes)',
    '',
    '| model | ACC % | ASR % | RA % | p(true) on triggered % |',
    '|---|---|---|---|---|',
    row('backdoored (standard training)', r.metrics.standard),
    ...(r.metrics.ntStudent ? [row('NT student (after non-target training)', r.metrics.ntStudent)] : []),
    ...(r.metrics.teacher ? [row('teacher (after mutual learning)', r.metrics.teacher)] : []),
    row(r.defense === 'NT-ML' ? '**purified student (final)**' : `**defended by ${r.defense} (final)**`, r.metrics.final),
    '',
    r.der !== undefined ? `DER: **${r.der.toFixed(1)}** (50 = no effect, 100 = backdoor removed at no accuracy cost)` : '',
    r.split
      ? `Split distillation: estimated target class ${r.split.estimatedTarget}, distilled on ${(100 * r.split.keptFraction).toFixed(1)}% of the training inputs.`
      : '',
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
  if (r.skippedCheckpoints.length) {
    lines.push('', 'Checkpoints that failed verification and were skipped:', ...r.skippedCheckpoints.map((s) => `- ${s}`));
  }
  return lines.filter((l, i, a) => !(l === '' && a[i - 1] === '')).join('\n') + '\n';
}
