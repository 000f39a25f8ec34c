import { execFile } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import * as path from 'node:path';
import { cleanEnv, freePorts, logTail, spawnServer, type ManagedProcess } from './proc';
import { toolPath, toolVersion } from './tools';

export interface TemporalDevServerOptions {
  /** Holds temporal.sqlite (WAL) and temporal.log; reused across restarts, so workflow history persists. */
  dataDir: string;
  /** Frontend gRPC port; a free one when omitted. */
  port?: number;
  /** Web UI port. When given the UI is served on it (loopback only); otherwise see `ui`. */
  uiPort?: number;
  /** Serve the Web UI on a free loopback port when no uiPort is given (default: headless). */
  ui?: boolean;
  /**
   * HTTP API port (a free one when omitted). start-dev also opens a few internal ports
   * (history, matching, worker services); it asks the OS for free loopback ports for those itself.
   */
  httpPort?: number;
  /** /metrics port (a free one when omitted). */
  metricsPort?: number;
  /** Extra namespaces to create at launch ("default" always exists). */
  namespaces?: string[];
  /** Give up after this long (default 60 s). */
  startTimeoutMs?: number;
  /** Leave the server running after this process exits (CLI background mode). Default false. */
  detached?: boolean;
  log?: (message: string) => void;
}

export interface TemporalDevServer {
  /** host:port for @temporalio/client Connection.connect({ address }). */
  address: string;
  port: number;
  httpPort: number;
  metricsPort: number;
  uiPort?: number;
  pid: number;
  pgid: number;
  logFile: string;
  dbFile: string;
  version: string;
  startupMs: number;
  stop(): Promise<void>;
}

const HERMETIC = ['--disable-config-file', '--disable-config-env'];

function runCli(cli: string, args: string[], timeoutMs: number): Promise<{ ok: boolean; output: string }> {
  return new Promise((resolve) => {
    execFile(cli, args, { timeout: timeoutMs, env: cleanEnv(['TEMPORAL_']) }, (err, stdout, stderr) => {
      resolve({ ok: !err, output: `${stdout}${stderr}`.trim() });
    });
  });
}

/** One health probe: `temporal operator cluster health` must report SERVING. */
export async function temporalHealthy(address: string, timeoutMs = 5_000): Promise<boolean> {
  const cli = toolPath('temporal');
  const r = await runCli(cli, ['operator', 'cluster', 'health', '--address', address, ...HERMETIC], timeoutMs);
  return r.ok && /SERVING/.test(r.output) && !/NOT_SERVING/.test(r.output);
}

async function namespaceReady(cli: string, address: string, namespace: string): Promise<boolean> {
  const r = await runCli(cli, ['operator', 'namespace', 'describe', '--address', address, '--namespace', namespace, ...HERMETIC], 5_000);
  return r.ok;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Starts `temporal server start-dev` on 127.0.0.1 with a SQLite file in dataDir and waits until
 * the frontend reports SERVING and the default namespace answers.
 */
export async function startTemporalDevServer(opts: TemporalDevServerOptions): Promise<TemporalDevServer> {
  const log = opts.log ?? ((m: string) => process.stderr.write(`[stack] ${m}\n`));
  const cli = toolPath('temporal');
  const version = await toolVersion('temporal');
  log(`temporal CLI: ${version}`);
  const dataDir = path.resolve(opts.dataDir);
  mkdirSync(dataDir, { recursive: true });
  const dbFile = path.join(dataDir, 'temporal.sqlite');
  const logFile = path.join(dataDir, 'temporal.log');
  const autoPorts = opts.port === undefined || opts.httpPort === undefined || opts.metricsPort === undefined;
  const attempts = autoPorts ? 3 : 1;
  let lastError: Error | undefined;
  for (let attempt = 1; attempt <= attempts; attempt++) {
    const explicit = [opts.port, opts.httpPort, opts.metricsPort, opts.uiPort].filter((p): p is number => p !== undefined);
    const autoUi = opts.ui === true && opts.uiPort === undefined;
    const [p1, p2, p3, p4] = await freePorts(autoUi ? 4 : 3, explicit);
    const uiPort = opts.uiPort ?? (autoUi ? p4 : undefined);
    const port = opts.port ?? p1;
    const httpPort = opts.httpPort ?? p2;
    const metricsPort = opts.metricsPort ?? p3;
    const auto = new Set<number>();
    if (opts.port === undefined) auto.add(port);
    if (opts.httpPort === undefined) auto.add(httpPort);
    if (opts.metricsPort === undefined) auto.add(metricsPort);
    if (autoUi) auto.add(uiPort!);
    const args = [
      'server', 'start-dev',
      '--ip', '127.0.0.1',
      '--port', String(port),
      '--http-port', String(httpPort),
      '--metrics-port', String(metricsPort),
      '--db-filename', dbFile,
      '--sqlite-pragma', 'journal_mode=WAL',
      '--log-level', 'error',
      ...HERMETIC,
    ];
    if (uiPort !== undefined) args.push('--ui-ip', '127.0.0.1', '--ui-port', String(uiPort));
    else args.push('--headless');
    for (const ns of opts.namespaces ?? []) args.push('--namespace', ns);

    const started = Date.now();
    const proc = await spawnServer({
      command: cli,
      args,
      env: cleanEnv(['TEMPORAL_']),
      cwd: dataDir,
      logFile,
      detached: opts.detached ?? false,
    });
    const address = `127.0.0.1:${port}`;
    try {
      await waitHealthy(cli, address, proc, opts.startTimeoutMs ?? 60_000);
    } catch (err) {
      await proc.stop(2_000);
      lastError = err as Error;
      // Another process may grab a port between our probe and the server's bind: retry with new
      // ports, but only when the port that clashed is one we picked.
      const clashed = [...lastError.message.matchAll(/:(\d+): bind: address already in use/g)].map((m) => Number(m[1]));
      const retryable = clashed.some((p) => auto.has(p));
      if (retryable && attempt < attempts) {
        log(`temporal dev server: port clash, retrying with new ports`);
        continue;
      }
      throw lastError;
    }
    const startupMs = Date.now() - started;
    log(`temporal dev server ready at ${address} in ${startupMs} ms (pid ${proc.pid}, db ${dbFile})`);
    return {
      address,
      port,
      httpPort,
      metricsPort,
      ...(uiPort !== undefined ? { uiPort } : {}),
      pid: proc.pid,
      pgid: proc.pgid,
      logFile,
      dbFile,
      version,
      startupMs,
      stop: () => proc.stop(),
    };
  }
  throw lastError ?? new Error('temporal dev server did not start');
}

async function waitHealthy(cli: string, address: string, proc: ManagedProcess, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let healthy = false;
  const exited = proc.exited.then(() => 'exited' as const);
  while (Date.now() < deadline) {
    // Probes race the server's exit, so a server that dies (e.g. port taken) is reported at once.
    const probe = healthy ? namespaceReady(cli, address, 'default') : temporalHealthy(address, 5_000);
    const result = await Promise.race([probe, exited]);
    const early = proc.exitedEarly();
    if (result === 'exited' || early) {
      throw new Error(
        `temporal dev server ${early ?? 'exited'} during start-up (${address}); log ${proc.logFile}:\n${await logTail(proc.logFile, proc.logOffset)}`,
      );
    }
    if (healthy && result) return;
    if (result) {
      healthy = true;
      continue;
    }
    await sleep(150);
  }
  throw new Error(
    `temporal dev server at ${address} not healthy after ${Math.round(timeoutMs / 1000)} s; log ${proc.logFile}:\n${await logTail(proc.logFile, proc.logOffset)}`,
  );
}
