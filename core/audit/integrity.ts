/**
 * The integrity check: is the deployed model the approved one? With a pinned digest
 * (policy.integrity.expectedDigest) every audit compares against the pin, so a swapped model
 * stays `changed` until someone approves it by updating the pin. Without a pin the previous
 * audit that recorded a digest is the reference: the first audit after a swap says `changed`,
 * and the history keeps the record of it. Pure.
 */
import type { AuditHistoryRecord, IntegrityCheck } from './report';

export function integrityCheck(
  digest: string,
  expectedDigest: string | undefined,
  previous: Pick<AuditHistoryRecord, 'digest' | 'auditId' | 'startedAt'> | undefined,
): IntegrityCheck {
  const earlier = previous?.digest
    ? { previousDigest: previous.digest, previousAuditId: previous.auditId, previousAuditAt: previous.startedAt }
    : {};
  if (expectedDigest !== undefined) {
    return { status: digest === expectedDigest ? 'unchanged' : 'changed', digest, expectedDigest, ...earlier };
  }
  if (!previous?.digest) return { status: 'first', digest };
  return { status: previous.digest === digest ? 'unchanged' : 'changed', digest, ...earlier };
}
