/**
 * Child-process plumbing for the local servers: free loopback ports, log files, and process
 * groups that die with their parent.
 *
 * Attached servers run under a small POSIX sh watchdog, in their own process group:
 *  - stop() signals the whole group (SIGTERM, then SIGKILL after a grace period);
 *  - the watchdog holds the read end of a pipe from this process; when this process dies for
 *    any reason (including SIGKILL) the pipe reaches EOF and the watchdog terminates the server;
 *  - on 'exit' and on SIGINT/SIGTERM/SIGHUP this process also signals the groups itself.
 * Detached servers (the CLI's background mode) are plain process-group leaders with their pids
 * recorded in stack.json, so a later `stop` can find them.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, promises as fsp, readFileSync, statSync } from 'node:fs';
import * as net from 'node:net';

/** A port the OS reports free on 127.0.0.1 right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen({ host: '127.0.0.1', port: 0, exclusive: true }, () => {
      const addr = server.address();
      server.close(() => (addr && typeof addr === 'object' ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

/** Several distinct free ports, none of them in `exclude`. */
export async function freePorts(n: number, exclude: Iterable<number> = []): Promise<number[]> {
  const skip = new Set(exclude);
  const out = new Set<number>();
  while (out.size < n) {
    const p = await freePort();
    if (!skip.has(p)) out.add(p);
  }
  return [...out];
}

function signalZero(target: number): boolean {
  try {
    process.kill(target, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export function isAlive(pid: number | undefined): boolean {
  return pid !== undefined && Number.isInteger(pid) && pid > 0 && signalZero(pid);
}

/** Whether any process is left in process group `pgid`. */
export function groupAlive(pgid: number | undefined): boolean {
  return pgid !== undefined && Number.isInteger(pgid) && pgid > 1 && signalZero(-pgid);
}

/** Whether pgid still belongs to one of our servers (guards against pid reuse after a reboot or crash). */
export function serverAlive(pgid: number | undefined, tool: string): pgid is number {
  if (!groupAlive(pgid)) return false;
  try {
    // a zombie leader has an empty cmdline: dead, even though signal 0 still reaches it
    const cmdline = readFileSync(`/proc/${pgid}/cmdline`, 'utf8');
    return cmdline.includes(tool);
  } catch {
    return true; // no /proc (macOS) or the leader exited but the group lives: trust the record
  }
}

function signalGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pgid, signal);
  } catch {
    // already gone
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** SIGTERM to the group, then SIGKILL after `graceMs`; resolves once nothing in the group is left. */
export async function killGroup(pgid: number, graceMs = 10_000): Promise<void> {
  if (!groupAlive(pgid)) return;
  signalGroup(pgid, 'SIGTERM');
  const deadline = Date.now() + graceMs;
  while (groupAlive(pgid) && Date.now() < deadline) await sleep(50);
  if (groupAlive(pgid)) {
    signalGroup(pgid, 'SIGKILL');
    const hard = Date.now() + 5_000;
    while (groupAlive(pgid) && Date.now() < hard) await sleep(50);
  }
}

/** The last `maxBytes` of a log file from `fromOffset` on, for error messages. */
export async function logTail(file: string, fromOffset = 0, maxBytes = 4000): Promise<string> {
  try {
    const handle = await fsp.open(file, 'r');
    try {
      const size = (await handle.stat()).size;
      const start = Math.max(fromOffset, size - maxBytes);
      const buf = Buffer.alloc(Math.max(0, size - start));
      await handle.read(buf, 0, buf.length, start);
      const text = buf.toString('utf8').trim();
      return text ? text : '(log is empty)';
    } finally {
      await handle.close();
    }
  } catch {
    return '(no log)';
  }
}

// The server runs in the background of this script; the script forwards SIGTERM/SIGINT/SIGHUP
// and a subshell watches stdin (a pipe from the Node parent) for EOF, i.e. the parent's death,
// using only the shell's builtin read so that no helper process outlives it. The watcher ignores
// SIGTERM/SIGINT/SIGHUP: the signal a stopping parent sends the whole group must not end it
// before the parent is gone, or a server slow to stop (a draining training worker whose Temporal
// went down with the stack) outlives the parent with no one left to kill it. When the server
// exits the script kills (SIGKILL: a just-forked subshell may still run the inherited TERM trap)
// and reaps the watcher, so no orphan (or zombie) keeps the process group alive.
// The server's pid is printed on stdout so the parent can report it.
const WATCHDOG = `
exec 3<&0
"$@" </dev/null >&2 3<&- &
child=$!
echo "$child"
trap 'kill -TERM "$child" 2>/dev/null' TERM INT HUP
(
  trap '' TERM INT HUP
  exec </dev/null >/dev/null
  while read -r _ <&3; do :; done
  kill -TERM "$child" 2>/dev/null || exit 0
  i=0
  while kill -0 "$child" 2>/dev/null && [ "$i" -lt 100 ]; do sleep 0.1; i=$((i+1)); done
  kill -KILL "$child" 2>/dev/null
) &
watcher=$!
exec 3<&-
wait "$child"; rc=$?
while kill -0 "$child" 2>/dev/null; do wait "$child"; rc=$?; done
kill -KILL "$watcher" 2>/dev/null
wait "$watcher" 2>/dev/null
exit "$rc"
`;

export interface ManagedProcess {
  /** The server's own pid. */
  readonly pid: number;
  /** Process group to signal (the watchdog's pid when attached, the server's pid when detached). */
  readonly pgid: number;
  readonly logFile: string;
  /** Log offset at spawn time: the tail of this run starts here. */
  readonly logOffset: number;
  readonly detached: boolean;
  /** Resolves with a description once the process has exited (attached mode only; never resolves when detached). */
  readonly exited: Promise<string>;
  exitedEarly(): string | undefined;
  stop(graceMs?: number): Promise<void>;
}

/** Attached process groups still running, with their ChildProcess (which also keeps the watchdog pipe referenced). */
const liveGroups = new Map<number, ChildProcess>();
let hooksInstalled = false;
let shuttingDown = false;

/**
 * Whether this process is stopping its attached servers (a signal or exit reached it): a
 * supervisor must not bring back a server that was stopped on purpose.
 */
export function attachedServersStopping(): boolean {
  return shuttingDown;
}

function installParentHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.on('exit', () => {
    shuttingDown = true;
    for (const pgid of liveGroups.keys()) signalGroup(pgid, 'SIGTERM');
  });
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const handler = () => {
      shuttingDown = true;
      for (const pgid of liveGroups.keys()) signalGroup(pgid, 'SIGTERM');
      // If nobody else handles this signal, restore the default behaviour (terminate).
      if (process.listenerCount(sig) === 1) {
        process.removeListener(sig, handler);
        process.kill(process.pid, sig);
      }
    };
    process.on(sig, handler);
  }
}

export interface SpawnOptions {
  command: string;
  args: string[];
  env: NodeJS.ProcessEnv;
  cwd: string;
  logFile: string;
  detached: boolean;
}

export async function spawnServer(opts: SpawnOptions): Promise<ManagedProcess> {
  let logOffset = 0;
  try {
    logOffset = statSync(opts.logFile).size;
  } catch {
    // new log
  }
  const logFd = openSync(opts.logFile, 'a', 0o600);
  let child: ChildProcess;
  try {
    if (opts.detached) {
      child = spawn(opts.command, opts.args, {
        cwd: opts.cwd,
        env: opts.env,
        detached: true,
        stdio: ['ignore', logFd, logFd],
      });
    } else {
      child = spawn('/bin/sh', ['-c', WATCHDOG, 'ntml-watchdog', opts.command, ...opts.args], {
        cwd: opts.cwd,
        env: opts.env,
        detached: true, // own process group, so stop() reaches the server and the watchdog together
        stdio: ['pipe', 'pipe', logFd],
      });
    }
  } finally {
    closeSync(logFd);
  }
  await new Promise<void>((resolve, reject) => {
    child.once('spawn', resolve);
    child.once('error', reject);
  });
  const pgid = child.pid!;
  let exitInfo: string | undefined;
  const exited = new Promise<string>((resolve) => {
    child.once('exit', (code, signal) => {
      exitInfo = signal ? `killed by ${signal}` : `exited with code ${code}`;
      liveGroups.delete(pgid);
      child.stdin?.destroy();
      resolve(exitInfo);
    });
  });

  let pid = pgid;
  if (opts.detached) {
    child.unref();
  } else {
    liveGroups.set(pgid, child);
    installParentHooks();
    // Keep the pipe open but let the event loop exit: the parent dying is what closes it.
    (child.stdin as unknown as { unref?: () => void } | null)?.unref?.();
    pid = await new Promise<number>((resolve) => {
      let buf = '';
      const onData = (chunk: Buffer) => {
        buf += chunk.toString('utf8');
        const nl = buf.indexOf('\n');
        if (nl >= 0) {
          child.stdout!.off('data', onData);
          resolve(Number.parseInt(buf.slice(0, nl), 10) || pgid);
        }
      };
      child.stdout!.on('data', onData);
      child.once('exit', () => resolve(pgid));
    });
    child.stdout!.resume();
    (child.stdout as unknown as { unref?: () => void }).unref?.();
    child.unref();
  }

  return {
    pid,
    pgid,
    logFile: opts.logFile,
    logOffset,
    detached: opts.detached,
    exited,
    exitedEarly: () => exitInfo,
    async stop(graceMs = 10_000) {
      await killGroup(pgid, graceMs);
      liveGroups.delete(pgid);
    },
  };
}

/** Environment for a server child: the parent's, minus variables that would reconfigure it behind our back. */
export function cleanEnv(dropPrefixes: string[], extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!dropPrefixes.some((p) => k.startsWith(p))) env[k] = v;
  }
  return { ...env, ...extra };
}
