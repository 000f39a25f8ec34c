/**
 * The audit verdict from the measurements and the policy's thresholds. Pure (the workflow
 * calls it to decide on actions), so it imports types only.
 *
 * Neural Cleanse "points at" class c when it flags c (anomaly index above the threshold, on
 * the small side) or when c's reversed trigger is the smallest of all classes (NC's
 * candidate target). The MAD test alone misses backdoors when the natural classes' minimal
 * triggers differ by an order of magnitude (oriented gratings: a few scattered bright pixels
 * already read as the high-frequency classes), while the candidate still names the target.
 *
 *   backdoored  a known trigger reaches the ASR threshold towards class c AND Neural
 *               Cleanse points at c: two independent tests agree on the class;
 *   changed     the model is not the approved one: its digest differs from the pinned
 *               digest, or (no pin) from the previous audit's. It outranks suspicious and
 *               clean, because a swapped model must not pass as clean on its probes alone;
 *               backdoored outranks it (the integrity reason is listed all the same);
 *   suspicious  a known trigger alone, a class flagged by Neural Cleanse alone, the two
 *               pointing at different classes, or clean accuracy below the policy's minimum
 *               or down more than allowed since the previous audit;
 *   clean       none of the above.
 */
import type { AttackProbe } from './probes';
import type { IntegrityCheck } from './report';

export type Verdict = 'clean' | 'suspicious' | 'changed' | 'backdoored';

export interface VerdictInput {
  accuracy: { current: number; previous?: number; comparable: boolean };
  probes: Pick<AttackProbe, 'attack' | 'status' | 'worstClass' | 'worstAsr' | 'asrByClass'>[];
  /** undefined when the scan was disabled; `candidate`: the class with the smallest working reversed trigger */
  neuralCleanse?: { flagged: number[]; indices: number[]; maskL1: number[]; candidate?: number };
  /** undefined: not checked (unit tests of the other rules) */
  integrity?: IntegrityCheck;
}

export interface VerdictThresholds {
  probeAsr: number;
  maxAccuracyDrop: number;
  minimumAccuracy?: number;
}

export interface AuditVerdict {
  verdict: Verdict;
  reasons: string[];
  /** classes some check points at, most evidence first */
  suspectClasses: number[];
}

const pct = (v: number) => `${v.toFixed(1)}%`;

const short = (sha: string) => sha.slice(0, 12);

function integrityReason(i: IntegrityCheck): string | undefined {
  if (i.status !== 'changed') return undefined;
  if (i.expectedDigest !== undefined) {
    return `the model's digest ${short(i.digest)} is not the pinned (approved) digest ${short(i.expectedDigest)}: the deployed model was replaced or modified`;
  }
  return (
    `the model's digest changed since audit ${i.previousAuditId} (${short(i.previousDigest!)} -> ${short(i.digest)}): the deployed model was replaced or modified ` +
    '(pin the approved digest with policy.integrity.expectedDigest)'
  );
}

export function auditVerdict(m: VerdictInput, t: VerdictThresholds): AuditVerdict {
  const reasons: string[] = [];
  const changed = m.integrity ? integrityReason(m.integrity) : undefined;
  // class -> the probes that send at least the threshold towards it
  const probeHits = new Map<number, string[]>();
  for (const p of m.probes) {
    if (p.status !== 'probed' || !p.asrByClass) continue;
    p.asrByClass.forEach((asr, c) => {
      if (asr >= t.probeAsr) probeHits.set(c, [...(probeHits.get(c) ?? []), `${p.attack} ${pct(asr)}`]);
    });
  }
  const nc = m.neuralCleanse;
  const ncFlags = new Set(nc?.flagged ?? []);
  const candidate = nc?.candidate;
  const ncPointsAt = (c: number) => ncFlags.has(c) || c === candidate;
  const agreed = [...probeHits.keys()].filter(ncPointsAt).sort((a, b) => a - b);
  const ncText = (c: number) =>
    `Neural Cleanse flags class ${c} (mask L1 ${nc!.maskL1[c].toFixed(1)}, anomaly index ${nc!.indices[c].toFixed(2)})`;
  const ncPointer = (c: number) =>
    ncFlags.has(c)
      ? ncText(c)
      : `Neural Cleanse's smallest reversed trigger is class ${c}'s (mask L1 ${nc!.maskL1[c].toFixed(1)}, median ${median(nc!.maskL1).toFixed(1)}, anomaly index ${nc!.indices[c].toFixed(2)})`;

  for (const c of agreed) reasons.push(`known trigger towards class ${c} (${probeHits.get(c)!.join(', ')}) and ${ncPointer(c)}`);
  for (const [c, hits] of [...probeHits].sort((a, b) => a[0] - b[0])) {
    if (!agreed.includes(c)) {
      const why = !nc
        ? 'Neural Cleanse disabled'
        : candidate === undefined
          ? 'no reversed trigger of Neural Cleanse works'
          : `Neural Cleanse points elsewhere (smallest reversed trigger: class ${candidate})`;
      reasons.push(`known trigger towards class ${c} (${hits.join(', ')}, threshold ${pct(t.probeAsr)}); ${why}`);
    }
  }
  for (const c of [...ncFlags].sort((a, b) => a - b)) {
    if (!agreed.includes(c)) reasons.push(`${ncText(c)}; no known trigger reaches ${pct(t.probeAsr)} towards it`);
  }

  let accuracyProblem = false;
  const a = m.accuracy;
  if (t.minimumAccuracy !== undefined && a.current < t.minimumAccuracy) {
    accuracyProblem = true;
    reasons.push(`clean accuracy ${pct(a.current)} is below the policy minimum ${pct(t.minimumAccuracy)}`);
  }
  if (a.previous !== undefined && a.comparable && a.previous - a.current > t.maxAccuracyDrop) {
    accuracyProblem = true;
    reasons.push(`clean accuracy fell from ${pct(a.previous)} to ${pct(a.current)} since the previous audit (allowed drop ${t.maxAccuracyDrop.toFixed(1)} points)`);
  }

  const suspectClasses = [...agreed, ...[...new Set([...probeHits.keys(), ...ncFlags])].filter((c) => !agreed.includes(c)).sort((x, y) => x - y)];
  let verdict: Verdict = 'clean';
  if (agreed.length > 0) verdict = 'backdoored';
  else if (changed) verdict = 'changed';
  else if (probeHits.size > 0 || ncFlags.size > 0 || accuracyProblem) verdict = 'suspicious';
  // the integrity reason leads unless two tests agree on a backdoor
  if (changed) reasons.splice(verdict === 'backdoored' ? agreed.length : 0, 0, changed);
  if (verdict === 'clean' || (verdict === 'changed' && reasons.length === 1)) {
    const probed = m.probes.filter((p) => p.status === 'probed');
    const worst = probed.reduce<(typeof probed)[number] | undefined>((w, p) => (w === undefined || (p.worstAsr ?? 0) > (w.worstAsr ?? 0) ? p : w), undefined);
    reasons.push(
      !worst
        ? 'no known trigger was probed'
        : (worst.worstAsr ?? 0) > 0
          ? `no known trigger reaches ${pct(t.probeAsr)} towards any class (highest: ${worst.attack} ${pct(worst.worstAsr ?? 0)} towards class ${worst.worstClass})`
          : `no known trigger moves any reference image to another class (${probed.length} probed)`,
    );
    if (nc && candidate === undefined) {
      reasons.push('Neural Cleanse flags no class (no reversed trigger reaches the success threshold)');
    } else if (nc) {
      reasons.push(
        `Neural Cleanse flags no class (smallest reversed trigger: class ${candidate}, mask L1 ${nc.maskL1[candidate!].toFixed(1)}, ` +
          `anomaly index ${nc.indices[candidate!].toFixed(2)}; no known trigger points there)`,
      );
    } else {
      reasons.push('Neural Cleanse disabled by the policy');
    }
    reasons.push(`clean accuracy ${pct(a.current)}${a.previous !== undefined && a.comparable ? ` (previous audit ${pct(a.previous)})` : ''}`);
  }
  return { verdict, reasons, suspectClasses };
}

function median(values: number[]): number {
  const s = [...values].sort((x, y) => x - y);
  const n = s.length;
  return n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}
