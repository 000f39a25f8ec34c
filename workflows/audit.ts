/**
 * audit: is the deployed model still the one we know, still accurate, and free of a
 * backdoor? Deterministic orchestration of the checks (activities on the training queue),
 * the verdict, and the policy's actions: purify when backdoored, notify, record.
 * Run once (`ntml audit run`) or from a Temporal Schedule (`ntml audit schedule create`).
 */
import {
  ActivityFailure,
  ApplicationFailure,
  ParentClosePolicy,
  defineQuery,
  proxyActivities,
  setHandler,
  startChild,
  workflowInfo,
} from '@temporalio/workflow';
import { WorkflowExecutionAlreadyStartedError } from '@temporalio/common';
import type * as activities from '../activities';
import { AuditRequest, purifyConfigFor } from '../schemas/audit';
import { formatIssues } from '../schemas/purify';
import { auditVerdict } from '../core/audit/verdict';
import { historyKey } from '../core/audit/history';
import type { AuditNotification, AuditOutcome, NcSummary, PurifyAction, WebhookResult } from '../core/audit/report';
import { TRAINING_TASK_QUEUE, type PurifyInput } from './contract';

export interface AuditInput {
  /** an AuditRequest (schemas/audit.ts); parsed here again, so a schedule's stored input obeys the same rules */
  request: unknown;
  options?: {
    trainingTaskQueue?: string;
    /** how long a check may go without a heartbeat before it is retried elsewhere */
    heartbeatTimeoutSeconds?: number;
  };
}

export interface AuditProgress {
  stage: string;
  completed: string[];
}

export const auditProgressQuery = defineQuery<AuditProgress>('progress');

/** The innermost message of an activity failure (the cause the activity threw). */
function failureText(err: unknown): string {
  let node = err as { message?: string; cause?: unknown } | undefined;
  let message = String(err);
  for (let depth = 0; node && depth < 10; depth++) {
    if (node.message) message = node.message;
    node = node.cause as typeof node;
  }
  return message;
}

export async function audit(input: AuditInput): Promise<AuditOutcome> {
  const parsed = AuditRequest.safeParse(input?.request);
  if (!parsed.success) {
    throw ApplicationFailure.nonRetryable(`invalid audit request:\n  ${formatIssues(parsed.error).join('\n  ')}`, 'InvalidAuditRequest');
  }
  const request = parsed.data;
  const { policy, modelId } = request;
  const info = workflowInfo();
  const auditId = info.workflowId;
  const startedAt = info.startTime.toISOString();
  const taskQueue = input.options?.trainingTaskQueue ?? TRAINING_TASK_QUEUE;
  const heartbeatTimeout = (input.options?.heartbeatTimeoutSeconds ?? 120) * 1000;
  const retry = { maximumAttempts: 3, initialInterval: 1000, backoffCoefficient: 2 };
  const checks = proxyActivities<typeof activities>({ taskQueue, startToCloseTimeout: '1h', heartbeatTimeout, retry });
  const scan = proxyActivities<typeof activities>({ taskQueue, startToCloseTimeout: '12h', heartbeatTimeout, retry });

  const progress: AuditProgress = { stage: 'integrity', completed: [] };
  setHandler(auditProgressQuery, () => progress);
  const stage = (name: string) => {
    if (progress.stage !== name) progress.completed.push(progress.stage);
    progress.stage = name;
  };

  const notify = async (notification: AuditNotification): Promise<WebhookResult | undefined> => {
    if (!policy.webhook) return undefined;
    const { secret, maxAttempts } = policy.webhook;
    const webhook = proxyActivities<typeof activities>({
      taskQueue,
      startToCloseTimeout: '30s',
      retry: { maximumAttempts: maxAttempts, initialInterval: 1000, backoffCoefficient: 2, maximumInterval: 60_000 },
    });
    try {
      return await webhook.notifyAuditWebhook({ secret, notification });
    } catch (err) {
      if (!(err instanceof ActivityFailure)) throw err;
      // a notification that cannot be delivered is recorded, never a reason to fail the audit
      return { secret, delivered: false, error: failureText(err) };
    }
  };

  let inspected;
  try {
    inspected = await checks.inspectAuditModel({ request, auditId, startedAt });
  } catch (err) {
    if (!(err instanceof ActivityFailure)) throw err;
    const error = failureText(err);
    stage('notify');
    const webhook = await notify({ event: 'ntml.audit.failed', auditId, modelId, startedAt, error, historyKey: historyKey(modelId, startedAt, auditId) });
    await checks.recordFailedAudit({ modelId, auditId, startedAt, error, webhook });
    throw ApplicationFailure.create({ message: `audit of ${modelId} failed: ${error}`, type: 'AuditFailed', nonRetryable: true, cause: err });
  }
  const model = inspected.model.stored;
  const reference = inspected.referenceSet.stored;

  stage('accuracy');
  const accuracy = await checks.measureAuditAccuracy({
    model,
    reference,
    previous: inspected.previousAccuracy,
    referenceDigest: inspected.referenceSet.digest,
  });

  stage('probes');
  const probes = await checks.probeAuditTriggers({ model, reference, policy });

  let neuralCleanse: NcSummary | undefined;
  if (policy.neuralCleanse.enabled) {
    stage('neuralCleanse');
    neuralCleanse = await scan.scanAuditNeuralCleanse({ model, reference, policy });
  }

  const verdict = auditVerdict(
    {
      accuracy,
      probes: probes.probes,
      neuralCleanse: neuralCleanse && {
        flagged: neuralCleanse.flagged,
        indices: neuralCleanse.classes.map((c) => c.anomalyIndex),
        maskL1: neuralCleanse.classes.map((c) => c.maskL1),
        candidate: neuralCleanse.smallestClass,
      },
      integrity: inspected.integrity,
    },
    { probeAsr: policy.probes.asrThreshold, maxAccuracyDrop: policy.accuracy.maxDrop, minimumAccuracy: policy.accuracy.minimum },
  );

  // The purification starts last: its training activities share the workers' slots and would
  // otherwise delay the notification and the report by a whole training stage.
  let purify: PurifyAction | undefined;
  if (verdict.verdict === 'backdoored' && policy.purifyOnBackdoored) {
    stage('purify');
    try {
      const exported = await checks.exportAuditModel({ model, digest: inspected.model.digest });
      // one purification per model digest: a daily audit of the same backdoored model does not start one a day
      purify = { workflowId: `audit-purify-${modelId}-${inspected.model.digest.slice(0, 16)}`, standardModel: exported.modelJson };
    } catch (err) {
      if (!(err instanceof ActivityFailure)) throw err;
      purify = { error: `the deployed model could not be exported for purification: ${failureText(err)}` };
    }
  }

  stage('notify');
  const webhook = await notify({
    event: 'ntml.audit.completed',
    auditId,
    modelId,
    startedAt,
    verdict: verdict.verdict,
    reasons: verdict.reasons,
    suspectClasses: verdict.suspectClasses,
    integrity: inspected.integrity.status,
    digest: inspected.model.digest,
    expectedDigest: inspected.integrity.expectedDigest,
    previousDigest: inspected.integrity.previousDigest,
    accuracy: accuracy.current,
    historyKey: inspected.historyKey,
    purifyWorkflowId: purify?.workflowId,
  });

  stage('report');
  const written = await checks.writeAuditReport({
    report: {
      auditId,
      modelId,
      startedAt,
      model: inspected.model,
      referenceSet: inspected.referenceSet,
      integrity: inspected.integrity,
      accuracy,
      probes,
      neuralCleanse,
      verdict,
      actions: { webhook, purify },
      policy,
    },
  });
  if (purify?.workflowId) {
    try {
      await startChild('purify', {
        workflowId: purify.workflowId,
        taskQueue: info.taskQueue,
        args: [{ config: purifyConfigFor(request, purify.standardModel!), options: { trainingTaskQueue: taskQueue } } satisfies PurifyInput],
        // the purification takes far longer than the audit and must outlive it
        parentClosePolicy: ParentClosePolicy.ABANDON,
        // a failed purification may be retried by a later audit, a running or finished one is not repeated
        workflowIdReusePolicy: 'ALLOW_DUPLICATE_FAILED_ONLY',
      });
    } catch (err) {
      purify =
        err instanceof WorkflowExecutionAlreadyStartedError
          ? { ...purify, note: 'started by an earlier audit of the same model digest' }
          : { error: `purify workflow ${purify.workflowId} did not start: ${failureText(err)}` };
      await checks.amendAuditRecord({ historyKey: written.historyKey, purify });
    }
  }
  stage('done');
  return {
    auditId,
    modelId,
    verdict: verdict.verdict,
    reasons: verdict.reasons,
    suspectClasses: verdict.suspectClasses,
    integrity: inspected.integrity,
    accuracy,
    report: written.report,
    markdown: written.markdown,
    historyKey: written.historyKey,
    webhook,
    purify,
  };
}
