/**
 * Local stack for development, tests and CI: a Temporal dev server (SQLite) and an S3 server
 * (versitygw), both on 127.0.0.1, with state under one directory:
 *   <dir>/stack.json        addresses, ports, pids, env for workers (no secrets)
 *   <dir>/temporal/         temporal.sqlite, temporal.log
 *   <dir>/s3/               credentials.json (0600), iam/, vers/, data/, versitygw.log
 */
import { spawn } from 'node:child_process';
import { mkdirSync, openSync, closeSync } from 'node:fs';
import * as path from 'node:path';
import { readCredentialsFile } from '../../store/index';
import { createS3Client } from '../../store/s3Store';
import { isAlive, killGroup, serverAlive } from './proc';
import { s3Healthy, startS3Server, type S3Server } from './s3';
import { readStackFile, stackFilePath, writeStackFile } from './stackFile';
import { superviseStack, type Supervisor } from './supervisor';
import { startTemporalDevServer, temporalHealthy, type TemporalDevServer } from './temporal';

export { startTemporalDevServer, temporalHealthy, type TemporalDevServer, type TemporalDevServerOptions } from './temporal';
export { startS3Server, s3Healthy, loadOrCreateCredentials, type S3Server, type S3ServerOptions } from './s3';
export { toolPath, toolsDir, toolVersion, PINNED_TOOLS } from './tools';
export { freePort, isAlive, groupAlive, killGroup, serverAlive } from './proc';
export { readStackFile, stackFilePath } from './stackFile';
export { superviseStack, type Supervisor, type SupervisorOptions, type ServerName } from './supervisor';
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
  /** The detached process that restarts dead servers of a background stack (infra/stack/supervise.ts). */
  supervisor?: { pid: number; logFile: string };
  /** Servers restarted after they died, by the supervisor or by a later start. */
  restarts?: Partial<Record<'temporal' | 's3', number>>;
  lastRestart?: { server: 'temporal' | 's3'; at: string };
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
  /**
   * Restart a server that dies, on its ports with its data (default true): in this process for
   * an attached stack, in a detached supervisor process for a detached one.
   */
  supervise?: boolean;
  log?: (message: string) => void;
}

export interface LocalStack {
  dir: string;
  stackFile: string;
  temporal?: TemporalDevServer;
  s3?: S3Server;
  /** Environment for workers, CLIs and tests. */
  env: StackEnv;
  detached: boolean;
  /** Servers this call restarted because a background stack in `dir` had lost them (the rest kept running). */
  healed: ('temporal' | 's3')[];
  /** The in-process supervisor of an attached stack. */
  supervisor?: Supervisor;
  stop(): Promise<void>;
}

const ours = serverAlive;

type TemporalRecord = NonNullable<StackFile['temporal']>;
type S3Record = NonNullable<StackFile['s3']>;

/** A server of a background stack that is still running, as a handle built from stack.json. */
function adoptTemporal(t: TemporalRecord): TemporalDevServer {
  const { dataDir: _dataDir, ...rest } = t;
  return { ...rest, stop: () => killGroup(t.pgid) };
}

function adoptS3(s: S3Record): S3Server {
  const { accessKeyId, secretAccessKey } = readCredentialsFile(s.credentialsFile);
  const { dataDir: _dataDir, ...rest } = s;
  return { ...rest, accessKeyId, secretAccessKey, stop: () => killGroup(s.pgid) };
}

function temporalRecord(t: TemporalDevServer): TemporalRecord {
  return {
    address: t.address,
    port: t.port,
    httpPort: t.httpPort,
    metricsPort: t.metricsPort,
    ...(t.uiPort !== undefined ? { uiPort: t.uiPort } : {}),
    pid: t.pid,
    pgid: t.pgid,
    dataDir: path.dirname(t.dbFile),
    logFile: t.logFile,
    dbFile: t.dbFile,
    version: t.version,
    startupMs: t.startupMs,
  };
}

function s3Record(s: S3Server): S3Record {
  return {
    endpoint: s.endpoint,
    port: s.port,
    region: s.region,
    bucket: s.bucket,
    pid: s.pid,
    pgid: s.pgid,
    dataDir: path.dirname(s.credentialsFile),
    logFile: s.logFile,
    credentialsFile: s.credentialsFile,
    version: s.version,
    startupMs: s.startupMs,
  };
}

const SUPERVISOR_SCRIPT = 'supervise.js';

/** Starts the detached supervisor process of a background stack (infra/stack/supervise.ts). */
function spawnSupervisor(dir: string): { pid: number; logFile: string } {
  const logFile = path.join(dir, 'supervisor.log');
  const fd = openSync(logFile, 'a', 0o600);
  try {
    const child = spawn(process.execPath, [path.join(__dirname, SUPERVISOR_SCRIPT), dir], {
      cwd: process.cwd(),
      detached: true,
      stdio: ['ignore', fd, fd],
    });
    child.unref();
    return { pid: child.pid!, logFile };
  } finally {
    closeSync(fd);
  }
}

/** SIGTERM to a background stack's supervisor; waits for it (it may be finishing a restart). True when one was running. */
async function stopSupervisor(info: StackFile): Promise<boolean> {
  const pid = info.supervisor?.pid;
  if (!serverAlive(pid, SUPERVISOR_SCRIPT)) return false;
  await killGroup(pid, 90_000); // a Temporal restart in progress may take a minute; it ends with it
  return true;
}

/**
 * Starts the stack in opts.dir. When a background start (`detached`) finds a background stack
 * there that lost a server (killed, crashed), only the dead servers are started again, on their
 * recorded ports with their data, and the returned stack includes the ones still running
 * (`healed` names the restarted ones); a background stack with every server up is returned as
 * it is. An attached start on a live background stack is refused (it would stop the stack when
 * done), and so is any start on an attached stack whose owner still runs.
 */
export async function startLocalStack(opts: LocalStackOptions): Promise<LocalStack> {
  const dir = path.resolve(opts.dir);
  mkdirSync(dir, { recursive: true });
  const previous = readStackFile(dir);
  const detached = opts.detached ?? false;
  let wantTemporal = opts.temporal ?? true;
  let wantS3 = opts.s3 ?? true;
  let ports = { temporal: opts.temporalPort, ui: opts.temporalUiPort, s3: opts.s3Port } as {
    temporal?: number;
    http?: number;
    metrics?: number;
    ui?: number;
    s3?: number;
  };
  let bucket = opts.bucket;
  const adopted: { temporal?: TemporalDevServer; s3?: S3Server } = {};
  let healing: StackFile | undefined;
  if (previous && !previous.stoppedAt) {
    const liveT = ours(previous.temporal?.pgid, 'temporal');
    const liveS = ours(previous.s3?.pgid, 'versitygw');
    const live = [liveT ? `temporal pid ${previous.temporal?.pid}` : undefined, liveS ? `versitygw pid ${previous.s3?.pid}` : undefined].filter(Boolean);
    if (live.length && !previous.detached) {
      if (isAlive(previous.ownerPid)) {
        throw new Error(`a stack is already running in ${dir} (${live.join(', ')}, owned by pid ${previous.ownerPid}); stop it first`);
      }
      // its owner died and a server outlived its watchdog: stop the leftover, start afresh below
      await Promise.all([liveT ? killGroup(previous.temporal!.pgid, 5_000) : undefined, liveS ? killGroup(previous.s3!.pgid, 5_000) : undefined]);
    } else if (live.length && !detached) {
      // the caller would own (and stop) the stack: not someone's background stack
      throw new Error(
        `a stack is already running in ${dir} in the background (${live.join(', ')}); ` +
          `"ntml stack start" restarts what died of it, "ntml stack stop" ends it`,
      );
    } else if (live.length) {
      // a background stack: keep what runs, bring back what died, exactly where it was
      await stopSupervisor(previous); // so that it does not restart the same server at the same time
      const current = readStackFile(dir) ?? previous; // the supervisor may have restarted one on its way out
      healing = current;
      wantTemporal = Boolean(current.temporal);
      wantS3 = Boolean(current.s3);
      if (current.temporal && ours(current.temporal.pgid, 'temporal')) adopted.temporal = adoptTemporal(current.temporal);
      if (current.s3 && ours(current.s3.pgid, 'versitygw')) adopted.s3 = adoptS3(current.s3);
      ports = {
        temporal: current.temporal?.port,
        http: current.temporal?.httpPort,
        metrics: current.temporal?.metricsPort,
        ui: current.temporal?.uiPort,
        s3: current.s3?.port,
      };
      bucket = current.s3?.bucket ?? bucket;
    }
  }
  const [t, s] = await Promise.allSettled([
    wantTemporal && !adopted.temporal
      ? startTemporalDevServer({
          dataDir: healing?.temporal?.dataDir ?? path.join(dir, 'temporal'),
          port: ports.temporal,
          httpPort: ports.http,
          metricsPort: ports.metrics,
          uiPort: ports.ui,
          ui: opts.temporalUi,
          detached,
          log: opts.log,
        })
      : Promise.resolve(adopted.temporal),
    wantS3 && !adopted.s3
      ? startS3Server({ dataDir: healing?.s3?.dataDir ?? path.join(dir, 's3'), port: ports.s3, bucket, detached, log: opts.log })
      : Promise.resolve(adopted.s3),
  ]);
  if (t.status === 'rejected' || s.status === 'rejected') {
    if (t.status === 'fulfilled' && t.value !== adopted.temporal) await t.value?.stop();
    if (s.status === 'fulfilled' && s.value !== adopted.s3) await s.value?.stop();
    throw (t.status === 'rejected' ? t.reason : (s as PromiseRejectedResult).reason) as Error;
  }
  const current: { temporal?: TemporalDevServer; s3?: S3Server } = { temporal: t.value, s3: s.value };
  const healed = healing ? (['temporal', 's3'] as const).filter((n) => current[n] && !adopted[n]) : [];
  const env: StackEnv = {};
  if (current.temporal) env.NTML_TEMPORAL_ADDRESS = current.temporal.address;
  if (current.s3) {
    env.NTML_STORE = healing?.env.NTML_STORE ?? `s3://${current.s3.bucket}/${opts.storePrefix ?? 'ntml'}`;
    env.NTML_S3_ENDPOINT = current.s3.endpoint;
    env.NTML_S3_REGION = current.s3.region;
    env.NTML_S3_CREDENTIALS_FILE = current.s3.credentialsFile;
  }
  const restarts = { ...healing?.restarts };
  for (const n of healed) restarts[n] = (restarts[n] ?? 0) + 1;
  const info: StackFile = {
    version: 1,
    dir,
    startedAt: healing?.startedAt ?? new Date().toISOString(),
    detached,
    ownerPid: healing?.ownerPid ?? process.pid,
    ...(current.temporal ? { temporal: temporalRecord(current.temporal) } : {}),
    ...(current.s3 ? { s3: s3Record(current.s3) } : {}),
    ...(healed.length ? { restarts, lastRestart: { server: healed[healed.length - 1], at: new Date().toISOString() } } : healing?.restarts ? { restarts } : {}),
    env,
  };
  const supervise = opts.supervise ?? true;
  if (supervise && detached) info.supervisor = spawnSupervisor(dir);
  await writeStackFile(info);
  for (const n of healed) opts.log?.(`restarted ${n === 'temporal' ? 'the Temporal dev server' : 'versitygw'} of the stack in ${dir} (it had died); the rest kept running`);

  const supervisor =
    supervise && !detached
      ? superviseStack({
          dir,
          log: opts.log ?? (() => undefined),
          onRestart: (name, handle) => {
            if (name === 'temporal') current.temporal = handle as TemporalDevServer;
            else current.s3 = handle as S3Server;
          },
        })
      : undefined;
  let stopping: Promise<void> | undefined;
  return {
    dir,
    stackFile: stackFilePath(dir),
    get temporal() {
      return current.temporal;
    },
    get s3() {
      return current.s3;
    },
    env,
    detached,
    healed: [...healed],
    ...(supervisor ? { supervisor } : {}),
    stop() {
      stopping ??= (async () => {
        if (detached) {
          await stopStack(dir);
          return;
        }
        await supervisor?.stop(); // first, so that it restarts nothing we stop
        await Promise.all([current.temporal?.stop(), current.s3?.stop()]);
        await writeStackFile({ ...(readStackFile(dir) ?? info), stoppedAt: new Date().toISOString() });
      })();
      return stopping;
    },
  };
}

/** Stops the servers recorded in <dir>/stack.json (e.g. a stack started detached by the CLI), its supervisor first. */
export async function stopStack(dir: string, graceMs = 10_000): Promise<{ stopped: string[] }> {
  const first = readStackFile(dir);
  if (!first) return { stopped: [] };
  const stopped: string[] = [];
  if (await stopSupervisor(first)) stopped.push(`supervisor pid ${first.supervisor!.pid}`);
  const info = readStackFile(dir) ?? first; // with the pids of a server the supervisor restarted last
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
  /** A background stack's supervisor process (it restarts dead servers). */
  supervisor?: { pid: number; running: boolean };
  restarts?: Partial<Record<'temporal' | 's3', number>>;
  lastRestart?: { server: 'temporal' | 's3'; at: string };
  env: StackEnv;
  /** Every recorded server is running and healthy. */
  ok: boolean;
}

export async function stackStatus(dir: string): Promise<StackStatus> {
  const info = readStackFile(dir);
  if (!info) return { dir: path.resolve(dir), recorded: false, env: {}, ok: false };
  const status: StackStatus = { dir: info.dir, recorded: true, env: info.env, ok: true };
  if (info.stoppedAt) status.stoppedAt = info.stoppedAt;
  if (info.supervisor) status.supervisor = { pid: info.supervisor.pid, running: serverAlive(info.supervisor.pid, SUPERVISOR_SCRIPT) };
  if (info.restarts) status.restarts = info.restarts;
  if (info.lastRestart) status.lastRestart = info.lastRestart;
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
