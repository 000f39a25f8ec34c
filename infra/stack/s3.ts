import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { CreateBucketCommand, ListBucketsCommand, type S3Client } from '@aws-sdk/client-s3';
import { createS3Client, s3ErrorName } from '../../store/s3Store';
import type { S3Credentials } from '../../store/types';
import { cleanEnv, freePort, logTail, spawnServer, type ManagedProcess } from './proc';
import { toolPath, toolVersion } from './tools';

export interface S3ServerOptions {
  /** Holds credentials.json (0600), iam/, vers/, data/ and versitygw.log; reused across restarts. */
  dataDir: string;
  /** A free port when omitted. */
  port?: number;
  /** Created when missing. Default "ntml". */
  bucket?: string;
  /** Give up after this long (default 30 s). */
  startTimeoutMs?: number;
  /** Leave the server running after this process exits (CLI background mode). Default false. */
  detached?: boolean;
  log?: (message: string) => void;
}

export interface S3Server {
  /** http://127.0.0.1:PORT */
  endpoint: string;
  port: number;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
  /** Path of the JSON credentials file, for NTML_S3_CREDENTIALS_FILE. */
  credentialsFile: string;
  bucket: string;
  pid: number;
  pgid: number;
  logFile: string;
  version: string;
  startupMs: number;
  stop(): Promise<void>;
}

const REGION = 'us-east-1';
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Reads <dataDir>/credentials.json, creating it (mode 0600, random keys) on first use. */
export function loadOrCreateCredentials(dataDir: string): { file: string; credentials: S3Credentials } {
  const file = path.join(dataDir, 'credentials.json');
  if (!existsSync(file)) {
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    const credentials: S3Credentials = {
      accessKeyId: `NTML${randomBytes(8).toString('hex').toUpperCase()}`,
      secretAccessKey: randomBytes(30).toString('base64url'),
    };
    try {
      writeFileSync(file, `${JSON.stringify(credentials, null, 2)}\n`, { mode: 0o600, flag: 'wx' });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err; // created concurrently: read theirs
    }
  }
  chmodSync(file, 0o600);
  const parsed = JSON.parse(readFileSync(file, 'utf8')) as Partial<S3Credentials>;
  if (typeof parsed.accessKeyId !== 'string' || typeof parsed.secretAccessKey !== 'string') {
    throw new Error(`${file} must hold {"accessKeyId", "secretAccessKey"}; delete it to generate new ones`);
  }
  return { file, credentials: { accessKeyId: parsed.accessKeyId, secretAccessKey: parsed.secretAccessKey } };
}

/** One health probe: an authenticated ListBuckets. */
export async function s3Healthy(client: S3Client): Promise<boolean> {
  try {
    await client.send(new ListBucketsCommand({}), { abortSignal: AbortSignal.timeout(3_000) });
    return true;
  } catch {
    return false;
  }
}

/** Starts versitygw (posix backend) on 127.0.0.1, waits for it to answer, and creates the bucket. */
export async function startS3Server(opts: S3ServerOptions): Promise<S3Server> {
  const log = opts.log ?? ((m: string) => process.stderr.write(`[stack] ${m}\n`));
  const bin = toolPath('versitygw');
  const version = await toolVersion('versitygw');
  log(`versitygw: ${version}`);
  const dataDir = path.resolve(opts.dataDir);
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  for (const sub of ['iam', 'vers', 'data']) mkdirSync(path.join(dataDir, sub), { recursive: true });
  const { file: credentialsFile, credentials } = loadOrCreateCredentials(dataDir);
  const bucket = opts.bucket ?? 'ntml';
  const logFile = path.join(dataDir, 'versitygw.log');
  const attempts = opts.port === undefined ? 3 : 1;
  let lastError: Error | undefined;

  for (let attempt = 1; attempt <= attempts; attempt++) {
    const port = opts.port ?? (await freePort());
    const endpoint = `http://127.0.0.1:${port}`;
    const started = Date.now();
    const proc = await spawnServer({
      command: bin,
      args: [
        '--quiet',
        '--port', `127.0.0.1:${port}`,
        '--region', REGION,
        '--iam-dir', path.join(dataDir, 'iam'),
        'posix',
        '--versioning-dir', path.join(dataDir, 'vers'),
        path.join(dataDir, 'data'),
      ],
      // Credentials go through the environment, not argv (which `ps` shows to every user).
      env: cleanEnv(['VGW_', 'ROOT_ACCESS_KEY', 'ROOT_SECRET', 'ROOT_ACCESS_KEY_ID', 'ROOT_SECRET_ACCESS_KEY'], {
        ROOT_ACCESS_KEY: credentials.accessKeyId,
        ROOT_SECRET_KEY: credentials.secretAccessKey,
      }),
      cwd: dataDir,
      logFile,
      detached: opts.detached ?? false,
    });
    const client = createS3Client({ endpoint, region: REGION, credentials });
    try {
      await waitReady(client, endpoint, proc, opts.startTimeoutMs ?? 30_000);
      try {
        await client.send(new CreateBucketCommand({ Bucket: bucket }));
      } catch (err) {
        if (s3ErrorName(err) !== 'BucketAlreadyOwnedByYou') throw err;
      }
    } catch (err) {
      await proc.stop(2_000);
      lastError = err as Error;
      if (attempt < attempts && /bind: address already in use/i.test(lastError.message)) {
        log('versitygw: port clash, retrying with a new port');
        continue;
      }
      throw lastError;
    } finally {
      client.destroy();
    }
    const startupMs = Date.now() - started;
    log(`versitygw ready at ${endpoint} in ${startupMs} ms (pid ${proc.pid}, bucket ${bucket}, data ${dataDir})`);
    return {
      endpoint,
      port,
      region: REGION,
      accessKeyId: credentials.accessKeyId,
      secretAccessKey: credentials.secretAccessKey,
      credentialsFile,
      bucket,
      pid: proc.pid,
      pgid: proc.pgid,
      logFile,
      version,
      startupMs,
      stop: () => proc.stop(),
    };
  }
  throw lastError ?? new Error('versitygw did not start');
}

async function waitReady(client: S3Client, endpoint: string, proc: ManagedProcess, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const exited = proc.exited.then(() => 'exited' as const);
  while (Date.now() < deadline) {
    const result = await Promise.race([s3Healthy(client), exited]);
    const early = proc.exitedEarly();
    if (result === 'exited' || early) {
      throw new Error(`versitygw ${early ?? 'exited'} during start-up (${endpoint}); log ${proc.logFile}:\n${await logTail(proc.logFile, proc.logOffset)}`);
    }
    if (result) return;
    await sleep(100);
  }
  throw new Error(
    `versitygw at ${endpoint} not ready after ${Math.round(timeoutMs / 1000)} s; log ${proc.logFile}:\n${await logTail(proc.logFile, proc.logOffset)}`,
  );
}
