/**
 * Optional encryption of every workflow payload (inputs, results, heartbeats, failures'
 * details) with AES-256-GCM, so the Temporal server and whoever reads its database or
 * histories see only ciphertext. Enabled by NTML_PAYLOAD_KEY_FILE on the clients and all
 * workers (they must share the key): the file holds one key per line (64 hex characters or
 * base64 of 32 bytes); the first encrypts, every one decrypts, so a key can be rotated by
 * putting the new one first and dropping the old one once no open run needs it.
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Payload, PayloadCodec } from '@temporalio/common';
import { temporal } from '@temporalio/proto';

export const ENCRYPTED_ENCODING = 'binary/encrypted';
const CIPHER = 'AES256GCM';
const IV_BYTES = 12;
const TAG_BYTES = 16;

export class PayloadKeyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PayloadKeyError';
  }
}

interface Key {
  id: string;
  bytes: Buffer;
}

function keyId(bytes: Buffer): string {
  // identifies the key in payload metadata without revealing anything usable about it
  return createHash('sha256').update('ntml-payload-key').update(bytes).digest('hex').slice(0, 16);
}

/** A 32-byte key written as 64 hex characters or as base64 (`openssl rand -base64 32`). */
export function parseKey(text: string, where: string): Buffer {
  const t = text.trim();
  let bytes: Buffer | undefined;
  if (/^[0-9a-fA-F]{64}$/.test(t)) bytes = Buffer.from(t, 'hex');
  else if (/^[A-Za-z0-9+/]{43}=$/.test(t)) bytes = Buffer.from(t, 'base64');
  if (bytes?.length !== 32) {
    throw new PayloadKeyError(`${where}: a payload key must be 32 bytes written as 64 hex characters or base64 (e.g. \`openssl rand -base64 32\`)`);
  }
  return bytes;
}

const utf8 = new TextEncoder();

export class AesGcmPayloadCodec implements PayloadCodec {
  private readonly keys: Key[];

  constructor(keys: Buffer[]) {
    if (keys.length === 0) throw new PayloadKeyError('the payload codec needs at least one key');
    this.keys = keys.map((bytes) => ({ id: keyId(bytes), bytes }));
  }

  /** The id written into the metadata of payloads this codec encrypts. */
  get encryptingKeyId(): string {
    return this.keys[0].id;
  }

  async encode(payloads: Payload[]): Promise<Payload[]> {
    const key = this.keys[0];
    return payloads.map((p) => {
      const iv = randomBytes(IV_BYTES);
      const cipher = createCipheriv('aes-256-gcm', key.bytes, iv);
      const plain = temporal.api.common.v1.Payload.encode(p).finish();
      const data = Buffer.concat([iv, cipher.update(plain), cipher.final(), cipher.getAuthTag()]);
      return {
        metadata: { encoding: utf8.encode(ENCRYPTED_ENCODING), 'encryption-cipher': utf8.encode(CIPHER), 'encryption-key-id': utf8.encode(key.id) },
        data,
      };
    });
  }

  async decode(payloads: Payload[]): Promise<Payload[]> {
    return payloads.map((p) => {
      const encoding = p.metadata?.encoding ? Buffer.from(p.metadata.encoding).toString('utf8') : undefined;
      // payloads written before encryption was turned on stay readable
      if (encoding !== ENCRYPTED_ENCODING) return p;
      const id = p.metadata?.['encryption-key-id'] ? Buffer.from(p.metadata['encryption-key-id']).toString('utf8') : '';
      const key = this.keys.find((k) => k.id === id);
      if (!key) throw new PayloadKeyError(`a payload is encrypted with key ${id || '(unnamed)'}, which is not in NTML_PAYLOAD_KEY_FILE`);
      const data = Buffer.from(p.data ?? new Uint8Array());
      if (data.length < IV_BYTES + TAG_BYTES) throw new PayloadKeyError('an encrypted payload is truncated');
      const decipher = createDecipheriv('aes-256-gcm', key.bytes, data.subarray(0, IV_BYTES));
      decipher.setAuthTag(data.subarray(data.length - TAG_BYTES));
      let plain: Buffer;
      try {
        plain = Buffer.concat([decipher.update(data.subarray(IV_BYTES, data.length - TAG_BYTES)), decipher.final()]);
      } catch {
        throw new PayloadKeyError(`an encrypted payload (key ${id}) fails authentication: it was altered or the key is wrong`);
      }
      const decoded = temporal.api.common.v1.Payload.decode(plain);
      return { metadata: decoded.metadata ?? {}, data: decoded.data ?? new Uint8Array() } as Payload;
    });
  }
}

/** The codec NTML_PAYLOAD_KEY_FILE configures, or undefined when it is not set (payloads in the clear). */
export function payloadCodecFromEnv(env: NodeJS.ProcessEnv = process.env): AesGcmPayloadCodec | undefined {
  const file = env.NTML_PAYLOAD_KEY_FILE?.trim();
  if (!file) return undefined;
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new PayloadKeyError(`NTML_PAYLOAD_KEY_FILE=${file} cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  const lines = text.split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'));
  return new AesGcmPayloadCodec(lines.map((l, i) => parseKey(l, `NTML_PAYLOAD_KEY_FILE line ${i + 1}`)));
}

/** Data converter options for clients and workers: the codec when configured, else the SDK default. */
export function dataConverterFromEnv(env: NodeJS.ProcessEnv = process.env): { payloadCodecs: PayloadCodec[] } | undefined {
  const codec = payloadCodecFromEnv(env);
  return codec ? { payloadCodecs: [codec] } : undefined;
}
