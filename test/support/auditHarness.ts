/**
 * What the audit tests share: the reference set as a file, audit requests with a CI-sized
 * Neural-Cleanse budget, a local HTTP server standing in for a webhook (it checks signatures
 * with the recipe of docs/audits.md, written here with node:crypto alone, not with ntml's
 * code), and a closed port for an unreachable one.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { after, before } from 'node:test';
import type { Client } from '@temporalio/client';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { encodeDataset } from '../../core/data/codec';
import type { AuditRequestInput } from '../../schemas/audit';
import { referenceSet } from './auditFixtures';
import { testClient } from './temporal';

/**
 * A scan budget for CI: 50 Adam steps per class at step size 0.3 with a fixed L1 cost of
 * 0.01 (NC's slow cost schedule needs ~300 steps to settle) is ~500 steps for the 10
 * classes. Measured on the fixtures: the backdoored model's class-0 trigger shrinks to the
 * bottom-right patch (mask L1 7.7, next smallest class 27.1, median 83.4), and the clean
 * model's largest anomaly index is 1.28 (threshold 2).
 */
export const CI_NEURAL_CLEANSE = { stepsPerClass: 50, batchSize: 32, learningRate: 0.3, cost: 0.01 } as const;

/**
 * The synthetic classes are oriented gratings, and SIG's trigger (a vertical grating of 6
 * cycles per width) is class 5's own feature: even the clean model sends 96.7% of the other
 * images to class 5 under it (measured; test/core/auditProbes.test.ts). A team with such data
 * excludes that probe as a natural feature of its classes, and so does the test policy.
 */
export const SYNTHETIC_DATA_PROBES = { exclude: ['sig'] };

export async function tempDir(tag: string): Promise<string> {
  return fs.mkdtemp(path.join(os.tmpdir(), `ntml-${tag}-`));
}

export interface AuditTestSetup {
  client: Client;
  /** a scratch folder of the test file */
  dir: string;
  /** the 200-image reference set's file in `dir` */
  reference: string;
}

/**
 * What an audit test file sets up before its tests and removes after them: a client of the test
 * run's server, a scratch folder and the reference set in it. Call at the top level of the file;
 * the fields are filled once its `before` hook has run.
 */
export function auditTestSetup(tag: string): AuditTestSetup {
  const setup = {} as AuditTestSetup;
  let close: (() => Promise<void>) | undefined;
  before(async () => {
    let client: Client;
    ({ client, close } = await testClient());
    const dir = await tempDir(tag);
    Object.assign(setup, { client, dir, reference: await writeReferenceSet(dir) });
  });
  after(async () => {
    await close?.();
    if (setup.dir) await fs.rm(setup.dir, { recursive: true, force: true });
  });
  return setup;
}

/** The 200-image reference set written as an ntml data set file; returns its path. */
export async function writeReferenceSet(dir: string, size = 200): Promise<string> {
  const file = path.join(dir, `reference-${size}.ntds`);
  await fs.writeFile(file, encodeDataset(referenceSet(size)));
  return file;
}

export function auditRequest(overrides: Partial<AuditRequestInput> & Pick<AuditRequestInput, 'modelId' | 'model' | 'referenceSet'>): AuditRequestInput {
  return {
    ...overrides,
    policy: {
      neuralCleanse: CI_NEURAL_CLEANSE,
      probes: SYNTHETIC_DATA_PROBES,
      ...(overrides.policy ?? {}),
    },
  };
}

export interface ReceivedHook {
  path: string;
  body: any;
  /** the body as received, byte for byte (what the signature covers) */
  raw: string;
  headers: IncomingMessage['headers'];
  /** the documented check with the receiver's secret at arrival: 'ok' or why not */
  signature?: string;
}

/** A signing secret for test webhooks (the workers read NTML_WEBHOOK_<NAME>_SIGNING_SECRET). */
export const TEST_SIGNING_SECRET = 'test-signing-secret-0123456789';

/**
 * docs/audits.md's receiver recipe: split Ntml-Signature into t and v1, HMAC-SHA256 "<t>.<raw
 * body>" with the secret, compare in constant time, and refuse a timestamp more than
 * `toleranceSeconds` from now.
 */
export function documentedSignatureCheck(raw: string, header: string | undefined, secret: string, nowSeconds: number, toleranceSeconds = 300): string {
  const fields = Object.fromEntries((header ?? '').split(',').map((kv) => kv.split('=') as [string, string]));
  if (!fields.t || !fields.v1) return 'malformed';
  const expected = createHmac('sha256', secret).update(`${fields.t}.${raw}`).digest();
  const given = Buffer.from(fields.v1, 'hex');
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return 'bad signature';
  if (Math.abs(nowSeconds - Number(fields.t)) > toleranceSeconds) return 'stale';
  return 'ok';
}

export interface HookServer {
  url: string;
  received: ReceivedHook[];
  /** resolves when `n` requests have arrived */
  waitFor(n: number, timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

/**
 * A webhook receiver on 127.0.0.1. `respond(n, req)` decides the answer to the n-th request
 * (1-based): a status code, or a promise of one to hold the request open.
 */
export async function hookServer(respond: (n: number, req: IncomingMessage) => number | Promise<number> = () => 200): Promise<HookServer> {
  const received: ReceivedHook[] = [];
  const waiters: Array<() => void> = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (d: Buffer) => chunks.push(d));
    req.on('end', async () => {
      const data = Buffer.concat(chunks).toString('utf8');
      let body: unknown = data;
      try {
        body = JSON.parse(data);
      } catch {
        // kept as text
      }
      const header = req.headers['ntml-signature'];
      received.push({
        path: req.url ?? '',
        body,
        raw: data,
        headers: req.headers,
        signature: documentedSignatureCheck(data, Array.isArray(header) ? header[0] : header, TEST_SIGNING_SECRET, Math.floor(Date.now() / 1000)),
      });
      waiters.splice(0).forEach((w) => w());
      const status = await respond(received.length, req);
      res.writeHead(status, { 'content-type': 'text/plain' }).end(status < 300 ? 'ok' : 'no');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    received,
    async waitFor(n, timeoutMs = 60_000) {
      const deadline = Date.now() + timeoutMs;
      while (received.length < n) {
        if (Date.now() > deadline) throw new Error(`webhook got ${received.length} requests, expected ${n}`);
        await new Promise<void>((resolve) => {
          waiters.push(resolve);
          setTimeout(resolve, 250);
        });
      }
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** A URL on a port nothing listens on (bound, then released). */
export async function unreachableUrl(): Promise<string> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `http://127.0.0.1:${port}/hook`;
}
