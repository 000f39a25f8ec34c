/** Writes the purify report (JSON + Markdown) to the store and records the run. */
import { artifactStore, saveJson } from './context';
import { activity } from './stageActivity';
import { purifyMarkdown } from '../core/report/purifyMarkdown';
import { backendKind, nativeTensorflowVersion } from '../core/tf';
import type { ArtifactRef, PurifyReport } from '../workflows/contract';

export async function writePurifyReport(input: { report: Omit<PurifyReport, 'backend'> }): Promise<{ report: ArtifactRef; markdown: ArtifactRef }> {
  return activity(async () => {
    const report: PurifyReport = { ...input.report, backend: `${backendKind} (TensorFlow ${nativeTensorflowVersion()})` };
    const markdownText = purifyMarkdown(report);
    const refs = { report: await saveJson(report), markdown: await artifactStore().put(Buffer.from(markdownText)) };
    await artifactStore().putRecord(`runs/purify/${report.runId.replace(/[^A-Za-z0-9._-]/g, '_')}`, {
      runId: report.runId,
      finishedAt: new Date().toISOString(),
      ...refs,
      purifiedModel: report.models.final,
      metrics: report.metrics,
      der: report.der,
    });
    return refs;
  });
}
