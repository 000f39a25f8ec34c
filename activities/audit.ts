/**
 * The audit's activities: thin Temporal wrappers around core/audit (reading the deployed
 * model and its digest, the checks, webhook delivery) that load and store artifacts, turn
 * permanent problems into non-retryable failures, and heartbeat the long scan.
 * A missing, corrupt or unsupported model fails once, non-retryably, with a message that
 * says which file and why; store or network hiccups are retried by Temporal.
 */
import * as os from 'node:os';
import * as path from 'node:path';
import { ApplicationFailure, Context } from '@temporalio/activity';
import { CancelledFailure } from '@temporalio/common';
import { ArtifactIntegrityError, ArtifactNotFoundError, s3OptionsFromEnv, type ArtifactRef } from '../store';
import { ConfigError } from '../schemas/purify';
import { ncOptionsOf, parseAuditRequest, type AuditPolicy, type AuditRequest } from '../schemas/audit';
import { DatasetError, type ImageDataset } from '../core/data/dataset';
import { datasetDigest } from '../core/data/codec';
import { loadDatasetFile } from '../core/experiment/prepareData';
import { exportLayersModel, ModelFormatError } from '../core/models/layersFormat';
import { predictLabels, type Classifier } from '../core/models/classifier';
import { accuracy } from '../core/metrics';
import { backendKind, nativeTensorflowVersion } from '../core/tf';
import { excludeProbes, probeKnownTriggers } from '../core/audit/probes';
import { reverseEngineerTrigger } from '../core/audit/neuralCleanse';
import { summarizeScan, type NcClassDone } from '../core/audit/scanSummary';
import { reversedTriggerPng } from '../core/audit/triggerImage';
import { WebhookSecretError } from '../core/audit/webhookSecret';
import { deliverAuditNotification, WebhookRejectedError } from '../core/audit/webhook';
import { assertReferenceFits, AuditModelError, readDeployedModel } from '../core/audit/deployedModel';
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
import { artifactStore, loadDataset, loadModel, localFile, saveDataset, saveModel, withKeepAlive } from './context';

/** Permanent problems become one non-retryable failure; anything else is retried. */
async function permanentAsAuditFailure<T>(f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (err) {
    const permanent = [AuditModelError, ConfigError, DatasetError, ModelFormatError, ArtifactNotFoundError, ArtifactIntegrityError];
    if (permanent.some((cls) => err instanceof cls)) {
      throw ApplicationFailure.nonRetryable((err as Error).message, (err as Error).name);
    }
    throw err;
  }
}

// --- inspect: integrity, reference set, previous audit ----------------------------------

export interface InspectedAudit {
  model: AuditedModel;
  referenceSet: ReferenceSetSummary;
  integrity: IntegrityCheck;
  previousAccuracy?: { accuracy: number; auditId: string; referenceDigest?: string };
  historyKey: string;
}

export async function inspectAuditModel(input: { request: unknown; auditId: string; startedAt: string }): Promise<InspectedAudit> {
  return withKeepAlive(() =>
    permanentAsAuditFailure(async () => {
      const r = parseAuditRequest(input.request);
      const read = await readDeployedModel(r.model, { store: artifactStore(), s3: s3OptionsFromEnv() });
      try {
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
      } finally {
        read.classifier.model.dispose();
      }
    }),
  );
}

function describeDatasetFile(f: AuditRequest['referenceSet']): string {
  if (f.format === 'idx') return `idx ${f.images} + ${f.labels}`;
  if (f.format === 'imageFolder') return `imageFolder ${f.dir}${f.labels ? ` + ${f.labels}` : ''}`;
  return `${f.format} ${f.location}`;
}

// --- measurements -------------------------------------------------------------------------

async function withModelAndReference<T>(model: ArtifactRef, reference: ArtifactRef, f: (c: Classifier, ref: ImageDataset) => Promise<T>): Promise<T> {
  return permanentAsAuditFailure(async () => {
    const c = await loadModel(model);
    try {
      return await f(c, await loadDataset(reference));
    } finally {
      c.model.dispose();
    }
  });
}

export async function measureAuditAccuracy(input: {
  model: ArtifactRef;
  reference: ArtifactRef;
  previous?: InspectedAudit['previousAccuracy'];
  referenceDigest: string;
}): Promise<AccuracyCheck> {
  return withKeepAlive(() =>
    withModelAndReference(input.model, input.reference, async (c, ref) => {
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
    }),
  );
}

export async function probeAuditTriggers(input: { model: ArtifactRef; reference: ArtifactRef; policy: AuditPolicy }): Promise<ProbeSummary> {
  return withKeepAlive(() =>
    withModelAndReference(input.model, input.reference, async (c, ref) => {
      const { exclude, asrThreshold } = input.policy.probes;
      return { ...excludeProbes(await probeKnownTriggers(c, ref), exclude), asrThreshold };
    }),
  );
}

/**
 * Reverse-engineers one trigger per class. Finished classes travel in the heartbeat
 * details, so a retried attempt (worker lost) continues with the next class.
 */
export async function scanAuditNeuralCleanse(input: { model: ArtifactRef; reference: ArtifactRef; policy: AuditPolicy }): Promise<NcSummary> {
  const ctx = Context.current();
  const t0 = Date.now();
  const o = ncOptionsOf(input.policy);
  const resumed = (ctx.info.heartbeatDetails as { done?: NcClassDone[] } | undefined)?.done ?? [];
  const done = new Map(resumed.map((d) => [d.targetClass, d]));
  const classes = await withModelAndReference(input.model, input.reference, async (c, ref) => {
    for (let target = 0; target < c.meta.numClasses; target++) {
      if (done.has(target)) continue;
      const t = await reverseEngineerTrigger(c, ref, target, o, (step) => {
        if (ctx.cancellationSignal.aborted) throw new CancelledFailure('audit cancelled');
        ctx.heartbeat({ done: [...done.values()], current: { targetClass: target, step } });
      });
      const image = await artifactStore().put(reversedTriggerPng(t.mask, t.pattern, ref));
      done.set(target, {
        targetClass: target,
        maskL1: t.maskL1,
        attackSuccessRate: t.attackSuccessRate,
        reachedThreshold: t.reachedThreshold,
        finalCost: t.finalCost,
        image,
      });
      ctx.heartbeat({ done: [...done.values()] });
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
  return withKeepAlive(() =>
    permanentAsAuditFailure(async () => {
      const c = await loadModel(input.model);
      try {
        const { modelJson } = await exportLayersModel(c, path.join(auditExportDir(), input.digest));
        return { modelJson };
      } finally {
        c.model.dispose();
      }
    }),
  );
}

/** One signed POST (core/audit/webhook.ts); Temporal retries the transient failures. */
export async function notifyAuditWebhook(input: { secret: string; notification: AuditNotification }): Promise<WebhookResult> {
  try {
    const { status, signedAt } = await deliverAuditNotification(input.secret, input.notification);
    return { secret: input.secret, delivered: true, attempt: Context.current().info.attempt, status, signedAt };
  } catch (err) {
    if (err instanceof WebhookSecretError || err instanceof WebhookRejectedError) throw ApplicationFailure.nonRetryable(err.message, err.name);
    throw err;
  }
}

export async function writeAuditReport(input: { report: Omit<AuditReport, 'backend' | 'finishedAt'> }): Promise<{
  report: ArtifactRef;
  markdown: ArtifactRef;
  historyKey: string;
}> {
  return withKeepAlive(async () => {
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
  const store = artifactStore();
  const record = await store.getRecord<AuditHistoryRecord>(input.historyKey);
  if (record) await store.putRecord(input.historyKey, { ...record, purify: input.purify });
}

/** A failed audit is part of the history too, with the reason. */
export async function recordFailedAudit(input: {
  modelId: string;
  auditId: string;
  startedAt: string;
  error: string;
  webhook?: WebhookResult;
}): Promise<{ historyKey: string }> {
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
}
