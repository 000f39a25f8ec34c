/**
 * Webhook signatures, after Stripe's scheme: the header
 *
 *   Ntml-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>" with the signing secret>
 *
 * The timestamp is inside the signed text, so a receiver that rejects old timestamps (five
 * minutes by default) also rejects a captured request replayed later; the HMAC covers the
 * exact bytes of the body, so the receiver must verify the raw body before parsing it.
 * docs/audits.md gives the same recipe for receivers in other languages.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

export const SIGNATURE_HEADER = 'Ntml-Signature';
/** the same id on every retry of one notification, so a receiver can drop duplicates */
export const DELIVERY_HEADER = 'Ntml-Delivery';
export const EVENT_HEADER = 'Ntml-Event';
export const DEFAULT_TOLERANCE_SECONDS = 300;

const hmac = (secret: string, timestamp: number, body: string) => createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex');

/** The Ntml-Signature header value for `body` signed at `timestamp` (unix seconds). */
export function signWebhook(body: string, secret: string, timestamp: number): string {
  if (!Number.isInteger(timestamp) || timestamp < 0) throw new RangeError(`signWebhook: timestamp must be whole unix seconds, got ${timestamp}`);
  return `t=${timestamp},v1=${hmac(secret, timestamp, body)}`;
}

export type SignatureCheck = { ok: true; timestamp: number } | { ok: false; reason: string };

/**
 * The receiver's check: a well-formed header, a v1 signature that matches (compared in
 * constant time), and a timestamp within `toleranceSeconds` of `now` (unix seconds).
 */
export function verifyWebhookSignature(
  body: string,
  header: string | undefined,
  secret: string,
  options: { now?: number; toleranceSeconds?: number } = {},
): SignatureCheck {
  if (!header) return { ok: false, reason: `no ${SIGNATURE_HEADER} header` };
  const parts = new Map<string, string[]>();
  for (const item of header.split(',')) {
    const eq = item.indexOf('=');
    if (eq > 0) parts.set(item.slice(0, eq).trim(), [...(parts.get(item.slice(0, eq).trim()) ?? []), item.slice(eq + 1).trim()]);
  }
  const t = parts.get('t')?.[0];
  if (!t || !/^\d+$/.test(t)) return { ok: false, reason: `${SIGNATURE_HEADER} has no timestamp t=<unix seconds>` };
  const timestamp = Number(t);
  const expected = Buffer.from(hmac(secret, timestamp, body), 'hex');
  const matches = (parts.get('v1') ?? []).some((v) => {
    const given = /^[0-9a-f]{64}$/.test(v) ? Buffer.from(v, 'hex') : undefined;
    return given !== undefined && timingSafeEqual(given, expected);
  });
  if (!matches) return { ok: false, reason: 'signature does not match the body' };
  const now = options.now ?? Math.floor(Date.now() / 1000);
  const tolerance = options.toleranceSeconds ?? DEFAULT_TOLERANCE_SECONDS;
  if (Math.abs(now - timestamp) > tolerance) return { ok: false, reason: `timestamp ${timestamp} is ${now - timestamp} s from now (tolerance ${tolerance} s)` };
  return { ok: true, timestamp };
}
