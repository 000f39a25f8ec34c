/**
 * What an audit records: the report (JSON, every number with where it came from), its
 * Markdown rendering, and the shapes that cross the workflow/activity boundary. Pure: the
 * workflow imports these types and the CLI renders reports without TensorFlow.
 */
import type { ArtifactRef } from '../../store/types';
import type { AuditPolicy } from '../../schemas/audit';
import type { AttackProbe } from './probes';
import type { AuditVerdict } from './verdict';

export interface ModelFile {
  name: string;
  sha256: string;
  bytes: number;
}

export interface AuditedModel {
  /** where the model was read from (a store URI or the model.json location) */
  source: string;
  /** sha256 of the stored artifact, or of the listing "<file> <sha256>" of model.json and its weight files */
  digest: string;
  files: ModelFile[];
  arch: string;
  inputShape: [number, number, number];
  numClasses: number;
  inputRange: string;
  /** the packed copy in the store that the checks loaded */
  stored: ArtifactRef;
}

export interface ReferenceSetSummary {
  source: string;
  /** sha256 of the decoded set's canonical encoding (format-independent) */
  digest: string;
  size: number;
  numClasses: number;
  stored: ArtifactRef;
}

export interface IntegrityCheck {
  /**
   * against the pinned digest when the policy pins one, else against the previous audit;
   * first: no pin and no earlier audit of this model id recorded a digest
   */
  status: 'first' | 'unchanged' | 'changed';
  digest: string;
  /** the approved digest the policy pins (policy.integrity.expectedDigest) */
  expectedDigest?: string;
  previousDigest?: string;
  previousAuditId?: string;
  previousAuditAt?: string;
}

export interface AccuracyCheck {
  /** % of the reference set classified correctly */
  current: number;
  referenceSize: number;
  previous?: number;
  previousAuditId?: string;
  /** current - previous, points */
  change?: number;
  /** false when the previous audit used another reference set */
  comparable: boolean;
}

export interface NcClassSummary {
  targetClass: number;
  maskL1: number;
  attackSuccessRate: number;
  anomalyIndex: number;
  flagged: boolean;
  reachedThreshold: boolean;
  finalCost: number;
  /** the reversed trigger as a PNG (mask | pattern | mask * pattern) */
  image: ArtifactRef;
}

export interface NcSummary {
  stepsPerClass: number;
  batchSize: number;
  cost: string;
  seed: number;
  anomalyThreshold: number;
  median: number;
  mad: number;
  flagged: number[];
  /** the class with the smallest working reversed trigger (NC's candidate target); none when no trigger works */
  smallestClass?: number;
  /** % of the reference images a reversed trigger must move for it to count (flags and candidate) */
  attackSuccessThreshold: number;
  classes: NcClassSummary[];
  seconds: number;
}

export interface ProbeSummary {
  seed: number;
  referenceSize: number;
  asrThreshold: number;
  probes: AttackProbe[];
}

export interface WebhookResult {
  secret: string;
  delivered: boolean;
  /** attempt that delivered it */
  attempt?: number;
  status?: number;
  /** the Ntml-Signature timestamp of the delivered attempt (unix seconds) */
  signedAt?: number;
  error?: string;
}

export interface PurifyAction {
  workflowId?: string;
  /** the exported copy of the deployed model the child purifies */
  standardModel?: string;
  /** e.g. that an earlier audit already started this purification */
  note?: string;
  error?: string;
}

export interface AuditReport {
  auditId: string;
  modelId: string;
  startedAt: string;
  finishedAt: string;
  model: AuditedModel;
  referenceSet: ReferenceSetSummary;
  integrity: IntegrityCheck;
  accuracy: AccuracyCheck;
  probes: ProbeSummary;
  neuralCleanse?: NcSummary;
  verdict: AuditVerdict;
  actions: { webhook?: WebhookResult; purify?: PurifyAction };
  policy: AuditPolicy;
  backend: string;
}

/** One line of `audits/<modelId>/history/`: what `ntml audit history` lists. */
export interface AuditHistoryRecord {
  auditId: string;
  modelId: string;
  startedAt: string;
  finishedAt: string;
  status: 'completed' | 'failed';
  verdict?: AuditVerdict['verdict'];
  reasons?: string[];
  error?: string;
  digest?: string;
  integrity?: IntegrityCheck['status'];
  /** the pinned digest the integrity check compared with */
  expectedDigest?: string;
  accuracy?: number;
  referenceDigest?: string;
  report?: ArtifactRef;
  markdown?: ArtifactRef;
  webhook?: WebhookResult;
  purify?: PurifyAction;
}

/** What the workflow returns. */
export interface AuditOutcome {
  auditId: string;
  modelId: string;
  verdict: AuditVerdict['verdict'];
  reasons: string[];
  suspectClasses: number[];
  integrity: IntegrityCheck;
  accuracy: AccuracyCheck;
  report: ArtifactRef;
  markdown: ArtifactRef;
  historyKey: string;
  webhook?: WebhookResult;
  purify?: PurifyAction;
}

/** The JSON body POSTed to the webhook. */
export interface AuditNotification {
  event: 'ntml.audit.completed' | 'ntml.audit.failed';
  auditId: string;
  modelId: string;
  startedAt: string;
  verdict?: AuditVerdict['verdict'];
  reasons?: string[];
  suspectClasses?: number[];
  integrity?: IntegrityCheck['status'];
  digest?: string;
  /** the pinned digest, when the policy pins one */
  expectedDigest?: string;
  /** the digest the previous audit recorded */
  previousDigest?: string;
  accuracy?: number;
  error?: string;
  /** the store record of this audit (report and Markdown are linked from it) */
  historyKey: string;
  purifyWorkflowId?: string;
}

const f1 = (v: number | undefined) => (v === undefined || Number.isNaN(v) ? '-' : v.toFixed(1));
const short = (sha: string) => `${sha.slice(0, 12)}…`;

/** File name of a class's reversed-trigger image next to the Markdown report. */
export const triggerImageName = (c: number) => `trigger-class-${c}.png`;

function integrityText(i: IntegrityCheck): string {
  const earlier = i.previousAuditId ? ` (audit \`${i.previousAuditId}\`, ${i.previousAuditAt})` : '';
  if (i.expectedDigest !== undefined) {
    return i.status === 'changed'
      ? `**changed**: pinned \`${short(i.expectedDigest)}\` → \`${short(i.digest)}\``
      : `matches the pinned digest \`${short(i.expectedDigest)}\``;
  }
  if (i.status === 'first') return `first audit of this model id (digest \`${short(i.digest)}\`)`;
  if (i.status === 'unchanged') return `unchanged since audit \`${i.previousAuditId}\``;
  return `**changed**: \`${short(i.previousDigest!)}\`${earlier} → \`${short(i.digest)}\``;
}

export function auditMarkdown(r: AuditReport): string {
  const out: string[] = [];
  out.push(`# Audit of ${r.modelId}: ${r.verdict.verdict.toUpperCase()}`, '');
  out.push(
    `Audit \`${r.auditId}\`, started ${r.startedAt}, finished ${r.finishedAt}. Model: ${r.model.source} ` +
      `(digest \`${short(r.model.digest)}\`, ${r.model.arch}, ${r.model.inputShape.join('x')}, ${r.model.numClasses} classes). ` +
      `Reference set: ${r.referenceSet.source}, ${r.referenceSet.size} images (digest \`${short(r.referenceSet.digest)}\`). Backend: ${r.backend}.`,
    '',
  );
  out.push('## Verdict', '', ...r.verdict.reasons.map((x) => `- ${x}`), '');

  out.push('## Checks', '', '| check | result |', '|---|---|');
  out.push(`| integrity | ${integrityText(r.integrity)} |`);
  const a = r.accuracy;
  const previous =
    a.previous === undefined
      ? 'no previous audit'
      : a.comparable
        ? `previous audit ${f1(a.previous)}%, change ${a.change! >= 0 ? '+' : ''}${f1(a.change)} points`
        : `previous audit used another reference set (${f1(a.previous)}%), not compared`;
  out.push(`| clean accuracy | ${f1(a.current)}% on ${a.referenceSize} reference images (${previous}) |`);
  const probed = r.probes.probes.filter((p) => p.status === 'probed');
  const worst = probed.reduce<AttackProbe | undefined>((w, p) => (!w || (p.worstAsr ?? 0) > (w.worstAsr ?? 0) ? p : w), undefined);
  out.push(
    `| known-trigger probes | ${probed.length} probed, ${r.probes.probes.length - probed.length} skipped; ${
      !worst
        ? 'none probed'
        : (worst.worstAsr ?? 0) > 0
          ? `highest ASR ${f1(worst.worstAsr)}% (${worst.attack} → class ${worst.worstClass}), threshold ${f1(r.probes.asrThreshold)}%`
          : `no trigger moves any image to another class (ASR 0.0% towards every class), threshold ${f1(r.probes.asrThreshold)}%`
    } |`,
  );
  const nc = r.neuralCleanse;
  out.push(
    `| Neural Cleanse | ${
      nc
        ? nc.flagged.length
          ? `flags class ${nc.flagged.join(', ')} (anomaly index ${nc.flagged.map((c) => nc.classes[c].anomalyIndex.toFixed(2)).join(', ')} > ${nc.anomalyThreshold})`
          : nc.smallestClass === undefined
            ? `no class flagged: no reversed trigger reached ${f1(nc.attackSuccessThreshold)}% (increase stepsPerClass)`
            : `no class flagged (threshold ${nc.anomalyThreshold}); smallest reversed trigger: class ${nc.smallestClass} ` +
              `(mask L1 ${f1(nc.classes[nc.smallestClass].maskL1)}, anomaly index ${nc.classes[nc.smallestClass].anomalyIndex.toFixed(2)})`
        : 'disabled by the policy'
    } |`,
  );
  out.push('');

  out.push('## Known-trigger probes', '');
  out.push(
    `Each trigger of the attack library with its default parameters (attack seed ${r.probes.seed}) on the ${r.probes.referenceSize} reference images; ` +
      'ASR towards class c = % of the images of other classes predicted as c once triggered ("clean" = the same without the trigger).',
    '',
  );
  const k = r.model.numClasses;
  out.push(`| attack | ${Array.from({ length: k }, (_, c) => `c${c}`).join(' | ')} | worst |`, `|---|${'---|'.repeat(k)}---|`);
  for (const p of probed) {
    // a row of zeros has no worst class: nothing to point a reader at
    const hasWorst = (p.worstAsr ?? 0) > 0;
    const cells = p.asrByClass!.map((v, c) => (hasWorst && c === p.worstClass ? `**${f1(v)}**` : f1(v)));
    out.push(`| ${p.attack} | ${cells.join(' | ')} | ${hasWorst ? `class ${p.worstClass}` : '-'} |`);
  }
  if (probed.length) out.push(`| (clean) | ${probed[0].cleanRateByClass!.map(f1).join(' | ')} | |`);
  out.push('');
  for (const p of r.probes.probes) out.push(`- **${p.attack}**: ${p.how}`);
  out.push('');

  if (nc) {
    out.push('## Neural Cleanse', '');
    out.push(
      `Reverse-engineered minimal trigger per class (${nc.stepsPerClass} Adam steps of ${nc.batchSize} images, cost ${nc.cost}, seed ${nc.seed}); ` +
        `anomaly index = |L1 - median| / (1.4826 · MAD), median ${f1(nc.median)}, MAD ${f1(nc.mad)}; classes below the median with an index above ${nc.anomalyThreshold} whose trigger reached ${f1(nc.attackSuccessThreshold)}% of the other images are flagged. ${nc.seconds.toFixed(1)} s.`,
      '',
    );
    out.push('| class | mask L1 | ASR of reversed trigger % | anomaly index | flagged | trigger image |', '|---|---|---|---|---|---|');
    for (const c of nc.classes) {
      out.push(
        `| ${c.targetClass} | ${f1(c.maskL1)}${c.reachedThreshold ? '' : ' (threshold not reached)'} | ${f1(c.attackSuccessRate)} | ${c.anomalyIndex.toFixed(2)} | ${
          c.flagged ? '**yes**' : 'no'
        } | ![class ${c.targetClass}](${triggerImageName(c.targetClass)}) |`,
      );
    }
    out.push('');
  }

  out.push('## Actions', '');
  const w = r.actions.webhook;
  if (w) {
    out.push(
      w.delivered
        ? `- webhook \`${w.secret}\`: delivered (HTTP ${w.status}, attempt ${w.attempt})`
        : `- webhook \`${w.secret}\`: **not delivered**: ${w.error} (the audit itself is unaffected)`,
    );
  } else out.push('- webhook: none in the policy');
  const p = r.actions.purify;
  if (p?.workflowId) {
    out.push(`- purification: workflow \`${p.workflowId}\`, started after this report (protection mode, standard model ${p.standardModel})${p.note ? `; ${p.note}` : ''}`);
  }
  else if (p?.error) out.push(`- purification could not be started: ${p.error}`);
  else if (r.policy.purifyOnBackdoored) out.push('- purification: not needed (verdict is not backdoored)');
  out.push('');
  return out.join('\n');
}
