/**
 * The webhook URL an audit policy names by a secret: held by the workers as
 * $NTML_WEBHOOK_<NAME>, or in the file named by $NTML_WEBHOOK_<NAME>_FILE (first line).
 * Such URLs carry credentials, so they never travel through workflow inputs, histories or
 * error messages: errors name the secret only.
 */
import { promises as fs } from 'node:fs';

export class WebhookSecretError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'WebhookSecretError';
  }
}

export async function resolveWebhookUrl(secret: string, env: NodeJS.ProcessEnv = process.env): Promise<URL> {
  const variable = `NTML_WEBHOOK_${secret}`;
  let value = env[variable]?.trim();
  const file = env[`${variable}_FILE`]?.trim();
  if (!value && file) {
    try {
      value = (await fs.readFile(file, 'utf8')).split('\n')[0].trim();
    } catch (err) {
      throw new WebhookSecretError(`webhook ${secret}: cannot read the file named by ${variable}_FILE (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
    }
  }
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
