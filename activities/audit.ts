/**
 * The audit's activities: thin Temporal wrappers around core/audit (reading the deployed
 * model and its digest, the checks, webhook delivery) that load and store artifacts. Each runs
 * through the activities' one helper (activities/stageActivity.ts: keep-alive, permanent
 * problems as non-retryable failures, models disposed however the body ends); the long scan
 * heartbeats its finished classes so a retried attempt continues.
 * A missing, corrupt or unsupported model fails once, non-retryably, with a message that
 * says which file and why; store or network hiccups are retried by Temporal.
 */
import * as os from 'node:os';
import * as path from 'node:path';
import { Context } from '@temporalio/activity';
import { CancelledFailure } from '@temporalio/common';
import { ArtifactNotFoundError, s3OptionsFromEnv, type ArtifactRef } from '../store';
import { ncOptionsOf, parseAuditRequest, type AuditPolicy, type AuditRequest } from '../schemas/audit';
import { DatasetError, type ImageDataset } from '../core/data/dataset';
import { datasetDigest } from '../core/data/codec';
import { loadDatasetFile } from '../core/experiment/prepareData';
import { exportLayersModel } from '../core/models/layersFormat';
import { predictLabels, type Classifier } from '../core/models/classifier';
import { accuracy } from '../core/metrics';
import { backendKind, nativeTensorflowVersion } from '../core/tf';
import { excludeProbes, probeKnownTriggers } from '../core/audit/probes';
import { classGroups, reverseEngineerTriggers } from '../core/audit/neuralCleanse';
import { summarizeScan, type NcClassDone } from '../core/audit/scanSummary';
import { reversedTriggerPng } from '../core/audit/triggerImage';
import { deliverAuditNotification } from '../core/audit/webhook';
import { assertReferenceFits, readDeployedModel } from '../core/audit/deployedModel';
import { integrityCheck } from '../core/audit/integrity';
import { historyKey, lastRecord, readHistory } from '../core/audit/history';
import {
  auditMarkdown,
  type AccuracyCheck,
  type AuditedModel,
  type AuditHistoryRecord,
  type AuditNotification,
  type AuditReport,
  type IntegrityCheck,
  type NcSummary,
  type ProbeSummary,
  type PurifyAction,
  type ReferenceSetSummary,
  type WebhookResult,
} from '../core/audit/report';
import { artifactStore, loadDataset, localFile, saveDataset, saveModel } from './context';
import { activity, type ActivityHost } from './stageActivity';

// --- inspect: integrity, reference set, previous audit ----------------------------------

export interface InspectedAudit {
  model: AuditedModel;
  referenceSet: ReferenceSetSummary;
  integrity: IntegrityCheck;
  previousAccuracy?: { accuracy: number; auditId: string; referenceDigest?: string };
  historyKey: string;
}

export async function inspectAuditModel(input: { request: unknown; auditId: string; startedAt: string }): Promise<InspectedAudit> {
  return activity(async (host) => {
    const r = parseAuditRequest(input.request);
    const read = await readDeployedModel(r.model, { store: artifactStore(), s3: s3OptionsFromEnv() });
    host.scope.classifier(read.classifier);
    let reference: ImageDataset;
    try {
      reference = await loadDatasetFile(r.referenceSet, (loc) => localFile(loc), 'referenceSet');
    } catch (err) {
      if (err instanceof ArtifactNotFoundError) throw new DatasetError(`referenceSet: ${err.message}`);
      throw err;
    }
    const { meta } = read.classifier;
    assertReferenceFits(meta, reference);
    const stored = r.model.artifact ?? (await saveModel(read.classifier));
    const referenceDigest = datasetDigest(reference);
    const key = historyKey(r.modelId, input.startedAt, input.auditId);
    const history = await readHistory(artifactStore(), r.modelId);
    const previous = lastRecord(history, (x) => x.digest !== undefined, key);
    const integrity = integrityCheck(read.digest, r.policy.integrity.expectedDigest, previous);
    const lastMeasured = lastRecord(history, (x) => x.status === 'completed' && x.accuracy !== undefined, key);
    return {
      model: {
        source: read.source,
        digest: read.digest,
        files: read.files,
        arch: meta.arch,
        inputShape: meta.inputShape,
        numClasses: meta.numClasses,
        inputRange: meta.inputRange,
        stored,
      },
      referenceSet: {
        source: describeDatasetFile(r.referenceSet),
        digest: referenceDigest,
        size: reference.labels.length,
        numClasses: reference.numClasses,
        stored: await saveDataset(reference),
      },
      integrity,
      previousAccuracy: lastMeasured
        ? { accuracy: lastMeasured.accuracy!, auditId: lastMeasured.auditId, referenceDigest: lastMeasured.referenceDigest }
        : undefined,
      historyKey: key,
    };
  });
}

function describeDatasetFile(f: AuditRequest['referenceSet']): string {
  if (f.format === 'idx') return `idx ${f.images} + ${f.labels}`;
  if (f.format === 'imageFolder') return `imageFolder ${f.dir}${f.labels ? ` + ${f.labels}` : ''}`;
  return `${f.format} ${f.location}`;
}

// --- measurements -------------------------------------------------------------------------

/** An activity on the audited model and the reference set (the model disposed by the helper). */
async function withModelAndReference<T>(
  model: ArtifactRef,
  reference: ArtifactRef,
  f: (c: Classifier, ref: ImageDataset, host: ActivityHost) => Promise<T>,
): Promise<T> {
  return activity(async (host) => f(await host.model(model), await loadDataset(reference), host));
}

export async function measureAuditAccuracy(input: {
  model: ArtifactRef;
  reference: ArtifactRef;
  previous?: InspectedAudit['previousAccuracy'];
  referenceDigest: string;
}): Promise<AccuracyCheck> {
  return withModelAndReference(input.model, input.reference, async (c, ref) => {
    const current = accuracy(await predictLabels(c, ref), ref.labels);
    const p = input.previous;
    const comparable = p !== undefined && p.referenceDigest === input.referenceDigest;
    return {
      current,
      referenceSize: ref.labels.length,
      previous: p?.accuracy,
      previousAuditId: p?.auditId,
      change: comparable ? current - p.accuracy : undefined,
      comparable,
    };
  });
}

export async function probeAuditTriggers(input: { model: ArtifactRef; reference: ArtifactRef; policy: AuditPolicy }): Promise<ProbeSummary> {
  return withModelAndReference(input.model, input.reference, async (c, ref) => {
    const { exclude, asrThreshold, strength } = input.policy.probes;
    return { ...excludeProbes(await probeKnownTriggers(c, ref, { strength }), exclude), asrThreshold };
  });
}

/**
 * Reverse-engineers one trigger per class, the classes of a group sharing each step (all of them
 * by default). Finished classes travel in the heartbeat details, so a retried attempt (worker
 * lost) continues with the classes not finished yet.
 */
export async function scanAuditNeuralCleanse(input: { model: ArtifactRef; reference: ArtifactRef; policy: AuditPolicy }): Promise<NcSummary> {
  const ctx = Context.current();
  const t0 = Date.now();
  const o = ncOptionsOf(input.policy);
  const resumed = (ctx.info.heartbeatDetails as { done?: NcClassDone[] } | undefined)?.done ?? [];
  const done = new Map(resumed.map((d) => [d.targetClass, d]));
  const classes = await withModelAndReference(input.model, input.reference, async (c, ref, host) => {
    // the keep-alive repeats the last details: the classes finished so far, resumed ones included
    host.progress({ done: [...done.values()] });
    const pending = Array.from({ length: c.meta.numClasses }, (_, k) => k).filter((k) => !done.has(k));
    for (const group of classGroups(pending)) {
      const triggers = await reverseEngineerTriggers(c, ref, group, o, (step) => {
        if (ctx.cancellationSignal.aborted) throw new CancelledFailure('audit cancelled');
        host.progress({ done: [...done.values()], current: { targetClasses: group, step } });
      });
      for (const t of triggers) {
        const image = await artifactStore().put(reversedTriggerPng(t.mask, t.pattern, ref));
        done.set(t.targetClass, {
          targetClass: t.targetClass,
          maskL1: t.maskL1,
          attackSuccessRate: t.attackSuccessRate,
          reachedThreshold: t.reachedThreshold,
          finalCost: t.finalCost,
          image,
        });
      }
      host.progress({ done: [...done.values()] });
    }
    return [...done.values()].sort((a, b) => a.targetClass - b.targetClass);
  });
  return summarizeScan(classes, o, (Date.now() - t0) / 1000);
}

// --- actions ------------------------------------------------------------------------------

/** Where exported models for purification go: a folder every training worker can read. */
function auditExportDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.NTML_AUDIT_EXPORT_DIR?.trim() || path.join(os.tmpdir(), 'ntml-audit-models');
}

/**
 * The audited model (its exact stored bytes) as model.json + weights.bin for `purify`'s
 * standardModel, in a folder named by its digest.
 */
export async function exportAuditModel(input: { model: ArtifactRef; digest: string }): Promise<{ modelJson: string }> {
  return activity(async (host) => {
    const { modelJson } = await exportLayersModel(await host.model(input.model), path.join(auditExportDir(), input.digest));
    return { modelJson };
  });
}

/** One signed POST (core/audit/webhook.ts); Temporal retries the transient failures. */
export async function notifyAuditWebhook(input: { secret: string; notification: AuditNotification }): Promise<WebhookResult> {
  // a missing signing secret or a 4xx answer is permanent (the helper's list); a 5xx is retried
  return activity(async () => {
    const { status, signedAt } = await deliverAuditNotification(input.secret, input.notification);
    return { secret: input.secret, delivered: true, attempt: Context.current().info.attempt, status, signedAt };
  });
}

export async function writeAuditReport(input: { report: Omit<AuditReport, 'backend' | 'finishedAt'> }): Promise<{
  report: ArtifactRef;
  markdown: ArtifactRef;
  historyKey: string;
}> {
  return activity(async () => {
    const report: AuditReport = { ...input.report, finishedAt: new Date().toISOString(), backend: `${backendKind} (TensorFlow ${nativeTensorflowVersion()})` };
    const store = artifactStore();
    const refs = {
      report: await store.put(Buffer.from(JSON.stringify(report))),
      markdown: await store.put(Buffer.from(auditMarkdown(report))),
    };
    const key = historyKey(report.modelId, report.startedAt, report.auditId);
    const record: AuditHistoryRecord = {
      auditId: report.auditId,
      modelId: report.modelId,
      startedAt: report.startedAt,
      finishedAt: report.finishedAt,
      status: 'completed',
      verdict: report.verdict.verdict,
      reasons: report.verdict.reasons,
      digest: report.model.digest,
      integrity: report.integrity.status,
      expectedDigest: report.integrity.expectedDigest,
      accuracy: report.accuracy.current,
      referenceDigest: report.referenceSet.digest,
      ...refs,
      webhook: report.actions.webhook,
      purify: report.actions.purify,
    };
    await store.putRecord(key, record);
    return { ...refs, historyKey: key };
  });
}

/** Records an action that failed after the report was written (the report itself is immutable). */
export async function amendAuditRecord(input: { historyKey: string; purify: PurifyAction }): Promise<void> {
  return activity(async () => {
    const store = artifactStore();
    const record = await store.getRecord<AuditHistoryRecord>(input.historyKey);
    if (record) await store.putRecord(input.historyKey, { ...record, purify: input.purify });
  });
}

/** A failed audit is part of the history too, with the reason. */
export async function recordFailedAudit(input: {
  modelId: string;
  auditId: string;
  startedAt: string;
  error: string;
  webhook?: WebhookResult;
}): Promise<{ historyKey: string }> {
  return activity(async () => {
    const key = historyKey(input.modelId, input.startedAt, input.auditId);
    const record: AuditHistoryRecord = {
      auditId: input.auditId,
      modelId: input.modelId,
      startedAt: input.startedAt,
      finishedAt: new Date().toISOString(),
      status: 'failed',
      error: input.error,
      webhook: input.webhook,
    };
    await artifactStore().putRecord(key, record);
    return { historyKey: key };
  });
}
