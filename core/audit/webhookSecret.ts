/**
 * The secrets of an audit policy's webhook, named by the policy and held by the workers:
 * the URL as $NTML_WEBHOOK_<NAME> (or the first line of the file named by
 * $NTML_WEBHOOK_<NAME>_FILE), and the signing secret as $NTML_WEBHOOK_<NAME>_SIGNING_SECRET
 * (or ..._SIGNING_SECRET_FILE). Such URLs carry credentials, so neither ever travels through
 * workflow inputs, histories or error messages: errors name the secret only.
 */
import { promises as fs } from 'node:fs';

export class WebhookSecretError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'WebhookSecretError';
  }
}

/** A signing secret shorter than this is refused: an HMAC is only as strong as its key. */
export const MIN_SIGNING_SECRET_LENGTH = 16;

async function readSecret(secret: string, variable: string, env: NodeJS.ProcessEnv): Promise<string | undefined> {
  const value = env[variable]?.trim();
  if (value) return value;
  const file = env[`${variable}_FILE`]?.trim();
  if (!file) return undefined;
  try {
    return (await fs.readFile(file, 'utf8')).split('\n')[0].trim() || undefined;
  } catch (err) {
    throw new WebhookSecretError(`webhook ${secret}: cannot read the file named by ${variable}_FILE (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
}

export async function resolveWebhookUrl(secret: string, env: NodeJS.ProcessEnv = process.env): Promise<URL> {
  const variable = `NTML_WEBHOOK_${secret}`;
  const value = await readSecret(secret, variable, env);
  if (!value) throw new WebhookSecretError(`webhook ${secret}: this worker has neither ${variable} nor ${variable}_FILE`);
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new WebhookSecretError(`webhook ${secret}: the secret is not a URL`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new WebhookSecretError(`webhook ${secret}: the secret must be an http(s) URL`);
  return url;
}

/** The key the worker signs this webhook's notifications with; unsigned notifications are never sent. */
export async function resolveSigningSecret(secret: string, env: NodeJS.ProcessEnv = process.env): Promise<string> {
  const variable = `NTML_WEBHOOK_${secret}_SIGNING_SECRET`;
  const value = await readSecret(secret, variable, env);
  if (!value) {
    throw new WebhookSecretError(`webhook ${secret}: this worker has neither ${variable} nor ${variable}_FILE (notifications are always signed; docs/audits.md)`);
  }
  if (value.length < MIN_SIGNING_SECRET_LENGTH) {
    throw new WebhookSecretError(`webhook ${secret}: ${variable} must be at least ${MIN_SIGNING_SECRET_LENGTH} characters (e.g. openssl rand -hex 32)`);
  }
  return value;
}
