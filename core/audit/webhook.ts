/**
 * Delivering an audit notification: one signed JSON POST to the URL the worker holds for the
 * policy's secret. Whether a failure is worth retrying is decided here, the retrying itself is
 * Temporal's: connection failures, timeouts, 408, 429 and 5xx are transient; other 4xx answers
 * and missing secrets will not change on retry (WebhookPermanentError). Errors name the
 * secret, never the URL (it carries credentials).
 */
import type { AuditNotification } from './report';
import { DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, signWebhook } from './webhookSignature';
import { resolveSigningSecret, resolveWebhookUrl } from './webhookSecret';

export const WEBHOOK_TIMEOUT_MS = 10_000;

/** A delivery that no retry can fix (the receiver refused it with a 4xx). */
export class WebhookRejectedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'WebhookRejected';
  }
}

export interface Delivery {
  status: number;
  /** the Ntml-Signature timestamp this attempt was signed with */
  signedAt: number;
}

export async function deliverAuditNotification(
  secret: string,
  notification: AuditNotification,
  options: { env?: NodeJS.ProcessEnv; now?: () => number; timeoutMs?: number } = {},
): Promise<Delivery> {
  const env = options.env ?? process.env;
  const url = await resolveWebhookUrl(secret, env);
  const signingSecret = await resolveSigningSecret(secret, env);
  const body = JSON.stringify(notification);
  // each attempt is signed when it is sent, so a retry after a long backoff is not stale
  const signedAt = Math.floor((options.now?.() ?? Date.now()) / 1000);
  const timeoutMs = options.timeoutMs ?? WEBHOOK_TIMEOUT_MS;
  let response: Response;
  try {
    response = await fetch(url, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'user-agent': 'ntml-audit',
        [SIGNATURE_HEADER]: signWebhook(body, signingSecret, signedAt),
        [EVENT_HEADER]: notification.event,
        [DELIVERY_HEADER]: `${notification.auditId}:${notification.event}`,
      },
      body,
      signal: AbortSignal.timeout(timeoutMs),
      redirect: 'manual',
    });
  } catch (err) {
    const e = err as Error & { cause?: { code?: string } };
    if (e.name === 'TimeoutError') throw new Error(`webhook ${secret}: no answer within ${timeoutMs / 1000} s`);
    throw new Error(`webhook ${secret}: connection failed (${e.cause?.code ?? e.name})`);
  }
  await response.body?.cancel();
  if (!response.ok) {
    const message = `webhook ${secret}: HTTP ${response.status}`;
    if (response.status >= 400 && response.status < 500 && response.status !== 408 && response.status !== 429) throw new WebhookRejectedError(message);
    throw new Error(message);
  }
  return { status: response.status, signedAt };
}
