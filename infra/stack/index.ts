/**
 * Local stack for development, tests and CI: a Temporal dev server (SQLite) and an S3 server
 * (versitygw), both on 127.0.0.1, with state under one directory:
 *   <dir>/stack.json        addresses, ports, pids, env for workers (no secrets)
 *   <dir>/temporal/         temporal.sqlite, temporal.log
 *   <dir>/s3/               credentials.json (0600), iam/, vers/, data/, versitygw.log
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { atomicWriteFile } from '../../store/fsStore';
import { readCredentialsFile } from '../../store/index';
import { createS3Client } from '../../store/s3Store';
import { groupAlive, killGroup } from './proc';
import { s3Healthy, startS3Server, type S3Server } from './s3';
import { startTemporalDevServer, temporalHealthy, type TemporalDevServer } from './temporal';

export { startTemporalDevServer, temporalHealthy, type TemporalDevServer, type TemporalDevServerOptions } from './temporal';
export { startS3Server, s3Healthy, loadOrCreateCredentials, type S3Server, type S3ServerOptions } from './s3';
export { toolPath, toolsDir, toolVersion, PINNED_TOOLS } from './tools';
export { freePort, isAlive, groupAlive, killGroup } from './proc';
export { DEFAULT_STACK_DIR, stackDirFromEnv } from './dir';

export interface StackEnv {
  NTML_TEMPORAL_ADDRESS?: string;
  NTML_STORE?: string;
  NTML_S3_ENDPOINT?: string;
  NTML_S3_REGION?: string;
  NTML_S3_CREDENTIALS_FILE?: string;
}

export interface StackFile {
  version: 1;
  dir: string;
  startedAt: string;
  stoppedAt?: string;
  detached: boolean;
  ownerPid: number;
  temporal?: {
    address: string;
    port: number;
    httpPort: number;
    metricsPort: number;
    uiPort?: number;
    pid: number;
    pgid: number;
    dataDir: string;
    logFile: string;
    dbFile: string;
    version: string;
    startupMs: number;
  };
  s3?: {
    endpoint: string;
    port: number;
    region: string;
    bucket: string;
    pid: number;
    pgid: number;
    dataDir: string;
    logFile: string;
    credentialsFile: string;
    version: string;
    startupMs: number;
  };
  env: StackEnv;
}

export interface LocalStackOptions {
  dir: string;
  /** Start the Temporal dev server (default true). */
  temporal?: boolean;
  /** Start versitygw (default true). */
  s3?: boolean;
  temporalPort?: number;
  temporalUiPort?: number;
  /** Serve Temporal's Web UI on a free loopback port (when temporalUiPort is not given). */
  temporalUi?: boolean;
  s3Port?: number;
  bucket?: string;
  /** Prefix inside the bucket for NTML_STORE (default "ntml"). */
  storePrefix?: string;
  /** Leave the servers running after this process exits; `stopStack(dir)` ends them. Default false. */
  detached?: boolean;
  log?: (message: string) => void;
}

export interface LocalStack {
  dir: string;
  stackFile: string;
  temporal?: TemporalDevServer;
  s3?: S3Server;
  /** Environment for workers, CLIs and tests. */
  env: StackEnv;
  stop(): Promise<void>;
}

export function stackFilePath(dir: string): string {
  return path.join(path.resolve(dir), 'stack.json');
}

export function readStackFile(dir: string): StackFile | undefined {
  const file = stackFilePath(dir);
  if (!existsSync(file)) return undefined;
  return JSON.parse(readFileSync(file, 'utf8')) as StackFile;
}

async function writeStackFile(info: StackFile): Promise<void> {
  await atomicWriteFile(stackFilePath(info.dir), `${JSON.stringify(info, null, 2)}\n`);
}

/** Whether pgid still belongs to one of our servers (guards against pid reuse after a reboot or crash). */
function ours(pgid: number | undefined, tool: string): pgid is number {
  if (!groupAlive(pgid)) return false;
  try {
    const cmdline = readFileSync(`/proc/${pgid}/cmdline`, 'utf8');
    return cmdline.includes(tool);
  } catch {
    return true; // no /proc (macOS) or the leader exited but the group lives: trust the record
  }
}

export async function startLocalStack(opts: LocalStackOptions): Promise<LocalStack> {
  const dir = path.resolve(opts.dir);
  mkdirSync(dir, { recursive: true });
  const previous = readStackFile(dir);
  if (previous && !previous.stoppedAt) {
    const live = [
      ours(previous.temporal?.pgid, 'temporal') ? `temporal pid ${previous.temporal?.pid}` : undefined,
      ours(previous.s3?.pgid, 'versitygw') ? `versitygw pid ${previous.s3?.pid}` : undefined,
    ].filter(Boolean);
    if (live.length) throw new Error(`a stack is already running in ${dir} (${live.join(', ')}); stop it first`);
  }
  const wantTemporal = opts.temporal ?? true;
  const wantS3 = opts.s3 ?? true;
  const detached = opts.detached ?? false;
  const [t, s] = await Promise.allSettled([
    wantTemporal
      ? startTemporalDevServer({
          dataDir: path.join(dir, 'temporal'),
          port: opts.temporalPort,
          uiPort: opts.temporalUiPort,
          ui: opts.temporalUi,
          detached,
          log: opts.log,
        })
      : Promise.resolve(undefined),
    wantS3
      ? startS3Server({ dataDir: path.join(dir, 's3'), port: opts.s3Port, bucket: opts.bucket, detached, log: opts.log })
      : Promise.resolve(undefined),
  ]);
  if (t.status === 'rejected' || s.status === 'rejected') {
    if (t.status === 'fulfilled') await t.value?.stop();
    if (s.status === 'fulfilled') await s.value?.stop();
    throw (t.status === 'rejected' ? t.reason : (s as PromiseRejectedResult).reason) as Error;
  }
  const temporal = t.value;
  const s3 = s.value;
  const env: StackEnv = {};
  if (temporal) env.NTML_TEMPORAL_ADDRESS = temporal.address;
  if (s3) {
    env.NTML_STORE = `s3://${s3.bucket}/${opts.storePrefix ?? 'ntml'}`;
    env.NTML_S3_ENDPOINT = s3.endpoint;
    env.NTML_S3_REGION = s3.region;
    env.NTML_S3_CREDENTIALS_FILE = s3.credentialsFile;
  }
  const info: StackFile = {
    version: 1,
    dir,
    startedAt: new Date().toISOString(),
    detached,
    ownerPid: process.pid,
    ...(temporal
      ? {
          temporal: {
            address: temporal.address,
            port: temporal.port,
            httpPort: temporal.httpPort,
            metricsPort: temporal.metricsPort,
            ...(temporal.uiPort !== undefined ? { uiPort: temporal.uiPort } : {}),
            pid: temporal.pid,
            pgid: temporal.pgid,
            dataDir: path.dirname(temporal.dbFile),
            logFile: temporal.logFile,
            dbFile: temporal.dbFile,
            version: temporal.version,
            startupMs: temporal.startupMs,
          },
        }
      : {}),
    ...(s3
      ? {
          s3: {
            endpoint: s3.endpoint,
            port: s3.port,
            region: s3.region,
            bucket: s3.bucket,
            pid: s3.pid,
            pgid: s3.pgid,
            dataDir: path.dirname(s3.credentialsFile),
            logFile: s3.logFile,
            credentialsFile: s3.credentialsFile,
            version: s3.version,
            startupMs: s3.startupMs,
          },
        }
      : {}),
    env,
  };
  await writeStackFile(info);
  let stopping: Promise<void> | undefined;
  return {
    dir,
    stackFile: stackFilePath(dir),
    temporal,
    s3,
    env,
    stop() {
      stopping ??= (async () => {
        await Promise.all([temporal?.stop(), s3?.stop()]);
        await writeStackFile({ ...info, stoppedAt: new Date().toISOString() });
      })();
      return stopping;
    },
  };
}

/** Stops the servers recorded in <dir>/stack.json (e.g. a stack started detached by the CLI). */
export async function stopStack(dir: string, graceMs = 10_000): Promise<{ stopped: string[] }> {
  const info = readStackFile(dir);
  if (!info) return { stopped: [] };
  const stopped: string[] = [];
  await Promise.all([
    (async () => {
      if (ours(info.temporal?.pgid, 'temporal')) {
        await killGroup(info.temporal!.pgid, graceMs);
        stopped.push(`temporal pid ${info.temporal!.pid}`);
      }
    })(),
    (async () => {
      if (ours(info.s3?.pgid, 'versitygw')) {
        await killGroup(info.s3!.pgid, graceMs);
        stopped.push(`versitygw pid ${info.s3!.pid}`);
      }
    })(),
  ]);
  if (!info.stoppedAt) await writeStackFile({ ...info, stoppedAt: new Date().toISOString() });
  return { stopped };
}

export interface StackStatus {
  dir: string;
  recorded: boolean;
  stoppedAt?: string;
  /** ui: Temporal's Web UI, when the stack serves it */
  temporal?: { address: string; pid: number; running: boolean; healthy: boolean; ui?: string };
  s3?: { endpoint: string; pid: number; running: boolean; healthy: boolean };
  env: StackEnv;
  /** Every recorded server is running and healthy. */
  ok: boolean;
}

export async function stackStatus(dir: string): Promise<StackStatus> {
  const info = readStackFile(dir);
  if (!info) return { dir: path.resolve(dir), recorded: false, env: {}, ok: false };
  const status: StackStatus = { dir: info.dir, recorded: true, env: info.env, ok: true };
  if (info.stoppedAt) status.stoppedAt = info.stoppedAt;
  if (info.temporal) {
    const running = ours(info.temporal.pgid, 'temporal');
    const healthy = running && (await temporalHealthy(info.temporal.address));
    status.temporal = {
      address: info.temporal.address,
      pid: info.temporal.pid,
      running,
      healthy,
      ...(info.temporal.uiPort !== undefined ? { ui: `http://127.0.0.1:${info.temporal.uiPort}` } : {}),
    };
    status.ok &&= healthy;
  }
  if (info.s3) {
    const running = ours(info.s3.pgid, 'versitygw');
    let healthy = false;
    if (running) {
      const client = createS3Client({
        endpoint: info.s3.endpoint,
        region: info.s3.region,
        credentials: readCredentialsFile(info.s3.credentialsFile),
      });
      healthy = await s3Healthy(client);
      client.destroy();
    }
    status.s3 = { endpoint: info.s3.endpoint, pid: info.s3.pid, running, healthy };
    status.ok &&= healthy;
  }
  return status;
}

/** Shell `export` lines for an env object (values single-quoted). */
export function envToShell(env: StackEnv): string {
  return Object.entries(env)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `export ${k}='${String(v).replace(/'/g, `'\\''`)}'`)
    .join('\n');
}
