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
import { auditVerdict, type AuditVerdict } from '../core/audit/verdict';
import { historyKey } from '../core/audit/history';
import type { AuditNotification, AuditOutcome, AuditReport, PurifyAction, WebhookResult } from '../core/audit/report';
import { PROGRESS_QUERY, TRAINING_TASK_QUEUE, type AuditInput, type AuditProgress, type PurifyInput } from './contract';

export const auditProgressQuery = defineQuery<AuditProgress>(PROGRESS_QUERY);

type Activities = typeof activities;
type Inspected = Awaited<ReturnType<Activities['inspectAuditModel']>>;
type Checks = Pick<AuditReport, 'accuracy' | 'probes' | 'neuralCleanse'>;

export async function audit(input: AuditInput): Promise<AuditOutcome> {
  const request = parseRequest(input?.request);
  const run = new AuditRun(request, input.options);
  const inspected = await run.inspect();
  const checks = await run.check(inspected);
  const verdict = run.decide(inspected, checks);
  // The purification starts last: its training activities share the workers' slots and would
  // otherwise delay the notification and the report by a whole training stage.
  let purify = verdict.verdict === 'backdoored' && request.policy.purifyOnBackdoored ? await run.exportForPurification(inspected) : undefined;
  const webhook = await run.notifyCompleted(inspected, checks, verdict, purify);
  const written = await run.writeReport(inspected, checks, verdict, { webhook, purify });
  if (purify?.workflowId) purify = await run.startPurification(purify, written.historyKey);
  run.stage('done');
  return {
    auditId: run.auditId,
    modelId: request.modelId,
    verdict: verdict.verdict,
    reasons: verdict.reasons,
    suspectClasses: verdict.suspectClasses,
    integrity: inspected.integrity,
    accuracy: checks.accuracy,
    report: written.report,
    markdown: written.markdown,
    historyKey: written.historyKey,
    webhook,
    purify,
  };
}

function parseRequest(raw: unknown): AuditRequest {
  const parsed = AuditRequest.safeParse(raw);
  if (!parsed.success) {
    throw ApplicationFailure.nonRetryable(`invalid audit request:\n  ${formatIssues(parsed.error).join('\n  ')}`, 'InvalidAuditRequest');
  }
  return parsed.data;
}

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

/** One audit's state: its ids, the activity proxies and the progress the query answers. */
class AuditRun {
  readonly auditId: string;
  readonly startedAt: string;
  private readonly taskQueue: string;
  private readonly checks: Activities;
  private readonly scan: Activities;
  private readonly progress: AuditProgress = { stage: 'integrity', completed: [] };

  constructor(
    private readonly request: AuditRequest,
    options: AuditInput['options'],
  ) {
    const info = workflowInfo();
    this.auditId = info.workflowId;
    this.startedAt = info.startTime.toISOString();
    this.taskQueue = options?.trainingTaskQueue ?? TRAINING_TASK_QUEUE;
    const heartbeatTimeout = (options?.heartbeatTimeoutSeconds ?? 120) * 1000;
    const retry = { maximumAttempts: 3, initialInterval: 1000, backoffCoefficient: 2 };
    this.checks = proxyActivities<Activities>({ taskQueue: this.taskQueue, startToCloseTimeout: '1h', heartbeatTimeout, retry });
    this.scan = proxyActivities<Activities>({ taskQueue: this.taskQueue, startToCloseTimeout: '12h', heartbeatTimeout, retry });
    setHandler(auditProgressQuery, () => this.progress);
  }

  stage(name: string): void {
    if (this.progress.stage !== name) this.progress.completed.push(this.progress.stage);
    this.progress.stage = name;
  }

  /** The model and reference set, their digests and the integrity check; a failure is notified and recorded. */
  async inspect(): Promise<Inspected> {
    const { modelId } = this.request;
    try {
      return await this.checks.inspectAuditModel({ request: this.request, auditId: this.auditId, startedAt: this.startedAt });
    } catch (err) {
      if (!(err instanceof ActivityFailure)) throw err;
      const error = failureText(err);
      this.stage('notify');
      const key = historyKey(modelId, this.startedAt, this.auditId);
      const webhook = await this.notify({ event: 'ntml.audit.failed', auditId: this.auditId, modelId, startedAt: this.startedAt, error, historyKey: key });
      await this.checks.recordFailedAudit({ modelId, auditId: this.auditId, startedAt: this.startedAt, error, webhook });
      throw ApplicationFailure.create({ message: `audit of ${modelId} failed: ${error}`, type: 'AuditFailed', nonRetryable: true, cause: err });
    }
  }

  /** Accuracy on the reference set, the known-trigger probes, and Neural Cleanse when enabled. */
  async check(inspected: Inspected): Promise<Checks> {
    const { policy } = this.request;
    const model = inspected.model.stored;
    const reference = inspected.referenceSet.stored;
    this.stage('accuracy');
    const accuracy = await this.checks.measureAuditAccuracy({
      model,
      reference,
      previous: inspected.previousAccuracy,
      referenceDigest: inspected.referenceSet.digest,
    });
    this.stage('probes');
    const probes = await this.checks.probeAuditTriggers({ model, reference, policy });
    if (!policy.neuralCleanse.enabled) return { accuracy, probes, neuralCleanse: undefined };
    this.stage('neuralCleanse');
    return { accuracy, probes, neuralCleanse: await this.scan.scanAuditNeuralCleanse({ model, reference, policy }) };
  }

  decide(inspected: Inspected, { accuracy, probes, neuralCleanse }: Checks): AuditVerdict {
    const { policy } = this.request;
    return auditVerdict(
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
  }

  /** The deployed model in the layers format, for a purification; one per model digest. */
  async exportForPurification(inspected: Inspected): Promise<PurifyAction> {
    this.stage('purify');
    try {
      const exported = await this.checks.exportAuditModel({ model: inspected.model.stored, digest: inspected.model.digest });
      // one purification per model digest: a daily audit of the same backdoored model does not start one a day
      return { workflowId: `audit-purify-${this.request.modelId}-${inspected.model.digest.slice(0, 16)}`, standardModel: exported.modelJson };
    } catch (err) {
      if (!(err instanceof ActivityFailure)) throw err;
      return { error: `the deployed model could not be exported for purification: ${failureText(err)}` };
    }
  }

  async notifyCompleted(inspected: Inspected, checks: Checks, verdict: AuditVerdict, purify: PurifyAction | undefined): Promise<WebhookResult | undefined> {
    this.stage('notify');
    return this.notify({
      event: 'ntml.audit.completed',
      auditId: this.auditId,
      modelId: this.request.modelId,
      startedAt: this.startedAt,
      verdict: verdict.verdict,
      reasons: verdict.reasons,
      suspectClasses: verdict.suspectClasses,
      integrity: inspected.integrity.status,
      digest: inspected.model.digest,
      expectedDigest: inspected.integrity.expectedDigest,
      previousDigest: inspected.integrity.previousDigest,
      accuracy: checks.accuracy.current,
      historyKey: inspected.historyKey,
      purifyWorkflowId: purify?.workflowId,
    });
  }

  async writeReport(inspected: Inspected, checks: Checks, verdict: AuditVerdict, actions: AuditReport['actions']) {
    this.stage('report');
    const { modelId, policy } = this.request;
    return this.checks.writeAuditReport({
      report: {
        auditId: this.auditId,
        modelId,
        startedAt: this.startedAt,
        model: inspected.model,
        referenceSet: inspected.referenceSet,
        integrity: inspected.integrity,
        ...checks,
        verdict,
        actions,
        policy,
      },
    });
  }

  /** Starts the purification as an abandoned child; a start that fails is recorded, never fatal. */
  async startPurification(purify: PurifyAction, recordKey: string): Promise<PurifyAction> {
    try {
      await startChild('purify', {
        workflowId: purify.workflowId!,
        taskQueue: workflowInfo().taskQueue,
        args: [{ config: purifyConfigFor(this.request, purify.standardModel!), options: { trainingTaskQueue: this.taskQueue } } satisfies PurifyInput],
        // the purification takes far longer than the audit and must outlive it
        parentClosePolicy: ParentClosePolicy.ABANDON,
        // a failed purification may be retried by a later audit, a running or finished one is not repeated
        workflowIdReusePolicy: 'ALLOW_DUPLICATE_FAILED_ONLY',
      });
      return purify;
    } catch (err) {
      const failed =
        err instanceof WorkflowExecutionAlreadyStartedError
          ? { ...purify, note: 'started by an earlier audit of the same model digest' }
          : { error: `purify workflow ${purify.workflowId} did not start: ${failureText(err)}` };
      await this.checks.amendAuditRecord({ historyKey: recordKey, purify: failed });
      return failed;
    }
  }

  /** A webhook notification when the policy has one; an undeliverable one is recorded, never a reason to fail the audit. */
  private async notify(notification: AuditNotification): Promise<WebhookResult | undefined> {
    const { webhook: hook } = this.request.policy;
    if (!hook) return undefined;
    const webhook = proxyActivities<Activities>({
      taskQueue: this.taskQueue,
      startToCloseTimeout: '30s',
      retry: { maximumAttempts: hook.maxAttempts, initialInterval: 1000, backoffCoefficient: 2, maximumInterval: 60_000 },
    });
    try {
      return await webhook.notifyAuditWebhook({ secret: hook.secret, notification });
    } catch (err) {
      if (!(err instanceof ActivityFailure)) throw err;
      return { secret: hook.secret, delivered: false, error: failureText(err) };
    }
  }
}
