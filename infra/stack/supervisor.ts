/**
 * Keeps a local stack's servers up: every second it checks the process groups recorded in
 * <dir>/stack.json, and restarts a server that died (SIGKILL, OOM, a crash) on the same ports
 * with the same data folder, so the Temporal history, the stored objects and the addresses that
 * workers and clients hold all stay valid. It runs in the process that owns the stack: the
 * command of an embedded stack, or a detached `supervise.js` process for a background one.
 */
import * as path from 'node:path';
import type { StackFile } from './index';
import { attachedServersStopping, serverAlive } from './proc';
import { startS3Server, type S3Server } from './s3';
import { readStackFile, writeStackFile } from './stackFile';
import { startTemporalDevServer, type TemporalDevServer } from './temporal';

export type ServerName = 'temporal' | 's3';

export interface SupervisorOptions {
  dir: string;
  /** How often the servers are checked (default 1000 ms). */
  intervalMs?: number;
  log?: (message: string) => void;
  /** A server was restarted; attached stacks keep the new handle to stop it later. */
  onRestart?: (server: ServerName, handle: TemporalDevServer | S3Server) => void;
}

export interface Supervisor {
  /** Restarts so far, per server. */
  readonly restarts: Record<ServerName, number>;
  /** Stops checking; waits for a restart in progress (whose server the caller then stops). */
  stop(): Promise<void>;
}

async function restart(info: StackFile, server: ServerName, log: (m: string) => void): Promise<TemporalDevServer | S3Server> {
  if (server === 'temporal') {
    const t = info.temporal!;
    return startTemporalDevServer({
      dataDir: t.dataDir,
      port: t.port,
      httpPort: t.httpPort,
      metricsPort: t.metricsPort,
      ...(t.uiPort !== undefined ? { uiPort: t.uiPort } : {}),
      detached: info.detached,
      log,
    });
  }
  const s = info.s3!;
  return startS3Server({ dataDir: s.dataDir, port: s.port, bucket: s.bucket, detached: info.detached, log });
}

export function superviseStack(opts: SupervisorOptions): Supervisor {
  const dir = path.resolve(opts.dir);
  const log = opts.log ?? ((m: string) => process.stderr.write(`[supervisor] ${m}\n`));
  const interval = opts.intervalMs ?? 1000;
  const restarts: Record<ServerName, number> = { temporal: 0, s3: 0 };
  // after a failed restart (e.g. its port taken meanwhile) wait longer before the next try
  const retryAt: Record<ServerName, number> = { temporal: 0, s3: 0 };
  const failures: Record<ServerName, number> = { temporal: 0, s3: 0 };
  let stopped = false;
  let wake: (() => void) | undefined;

  const check = async (): Promise<void> => {
    const info = readStackFile(dir);
    if (!info || info.stoppedAt) return;
    // Ctrl-C or SIGTERM reached the owner of an attached stack: its servers were stopped on purpose
    if (!info.detached && attachedServersStopping()) return;
    const dead = (['temporal', 's3'] as const).filter((name) => {
      const rec = info[name];
      return rec && !serverAlive(rec.pgid, name === 'temporal' ? 'temporal' : 'versitygw') && Date.now() >= retryAt[name];
    });
    if (dead.length === 0) return;
    const restarted = await Promise.all(
      dead.map(async (name) => {
        const rec = info[name]!;
        log(`${name === 'temporal' ? 'Temporal dev server' : 'versitygw'} (pid ${rec.pid}) is gone; restarting it on port ${rec.port} with ${rec.dataDir}`);
        try {
          const handle = await restart(info, name, log);
          restarts[name]++;
          failures[name] = 0;
          opts.onRestart?.(name, handle);
          return { name, handle };
        } catch (err) {
          failures[name]++;
          retryAt[name] = Date.now() + Math.min(30_000, 1000 * 2 ** failures[name]);
          log(`restarting ${name} failed (try ${failures[name]}; next in ${Math.round((retryAt[name] - Date.now()) / 1000)} s): ${(err as Error).message.split('\n')[0]}`);
          return undefined;
        }
      }),
    );
    // re-read: stop() may have marked the stack stopped while the servers came up
    const latest = readStackFile(dir) ?? info;
    for (const r of restarted) {
      if (!r) continue;
      const rec = latest[r.name]!;
      rec.pid = r.handle.pid;
      rec.pgid = r.handle.pgid;
      rec.startupMs = r.handle.startupMs;
      latest.restarts = { ...latest.restarts, [r.name]: (latest.restarts?.[r.name] ?? 0) + 1 };
      latest.lastRestart = { server: r.name, at: new Date().toISOString() };
      log(`${r.name} is back (pid ${r.handle.pid})`);
    }
    if (restarted.some(Boolean)) await writeStackFile(latest);
  };

  const loop = (async () => {
    while (!stopped) {
      try {
        await check();
      } catch (err) {
        log(`check failed: ${(err as Error).message.split('\n')[0]}`);
      }
      if (stopped) break;
      await new Promise<void>((resolve) => {
        wake = resolve;
        setTimeout(resolve, interval).unref();
      });
    }
  })();

  return {
    restarts,
    async stop() {
      stopped = true;
      wake?.();
      await loop;
    },
  };
}
