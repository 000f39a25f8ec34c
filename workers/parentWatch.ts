/**
 * A training worker that a command started as its child process (cli/trainingProcesses.ts sets
 * NTML_PARENT_PID) ends when that command is gone, however it went, SIGKILL included. Without
 * this a worker outlived an interrupted `ntml sweep start`: its stack's Temporal server was gone,
 * so its drain retried heartbeats forever. The worker is not the command's direct child (a
 * watchdog shell sits between them, infra/stack/proc.ts), so process.ppid cannot tell; the
 * command's pid is polled instead, with its start time as a guard against pid reuse.
 */
import { readFileSync } from 'node:fs';

export const PARENT_PID_VARIABLE = 'NTML_PARENT_PID';

/** The pid to watch from NTML_PARENT_PID; undefined when unset; a bad value is an error naming the variable. */
export function parentPidFromEnv(env: NodeJS.ProcessEnv = process.env): number | undefined {
  const raw = env[PARENT_PID_VARIABLE]?.trim();
  if (!raw) return undefined;
  const pid = Number(raw);
  if (!Number.isInteger(pid) || pid < 2) throw new Error(`${PARENT_PID_VARIABLE} must be the pid of the process that started this worker (an integer >= 2), got "${raw}"`);
  return pid;
}

/** State and start time (fields 3 and 22 of /proc/PID/stat), or undefined without /proc or without that process. */
function procStat(pid: number): { state: string; startTime: string } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // the command name (field 2) may hold spaces and parentheses: count fields after its last ')'
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { state: fields[0], startTime: fields[19] };
  } catch {
    return undefined;
  }
}

function exists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Calls `onGone` once, when process `pid` has exited (or its pid now names another process).
 * Polls every `intervalMs` on a timer that does not keep this process alive. Returns a stop function.
 */
export function watchParent(pid: number, onGone: () => void, intervalMs = 1_000): () => void {
  const started = procStat(pid)?.startTime;
  const gone = () => {
    if (!exists(pid)) return true;
    if (started === undefined) return false; // no /proc (macOS): signal 0 is all there is
    const now = procStat(pid);
    // a killed parent its own parent has not reaped yet is a zombie: signal 0 still reaches it
    return !now || now.startTime !== started || now.state === 'Z' || now.state === 'X';
  };
  if (gone()) {
    // gone before the watch began: the same answer, on the next tick so the caller's setup completes
    const t = setImmediate(onGone);
    return () => clearImmediate(t);
  }
  const timer = setInterval(() => {
    if (!gone()) return;
    clearInterval(timer);
    onGone();
  }, intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}
