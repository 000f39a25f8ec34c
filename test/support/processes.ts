/**
 * Test helpers for commands run as child processes: `ntml` (or any node script) run to the end
 * with its output, or started with its output captured so that a test can signal it mid-run;
 * polling until a condition holds; and what a process left behind looks like in /proc.
 * Kept free of Temporal and TensorFlow imports, so the light CLI tests load nothing heavy.
 */
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import * as path from 'node:path';

export const repoRoot = path.resolve(__dirname, '..', '..', '..');
export const NTML_BIN = path.join(repoRoot, 'bin', 'ntml');

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Polls `cond` every `everyMs` until it holds; fails the test past `timeoutMs`, saying what it waited for. */
export async function waitFor(cond: () => boolean | Promise<boolean>, timeoutMs: number, what: string | (() => string), everyMs = 200): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await cond()) return;
    await sleep(everyMs);
  }
  assert.fail(`timed out after ${timeoutMs} ms waiting for ${typeof what === 'string' ? what : what()}`);
}

export interface CommandRun {
  /** the exit code; 1 when the process was killed (a timeout) or could not start */
  code: number;
  stdout: string;
  stderr: string;
  seconds: number;
}

export interface RunOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  timeout?: number;
}

/** `node script args...` to the end (killed past `timeout`, default 60 s). */
export function runNode(script: string, args: string[], opts: RunOptions = {}): Promise<CommandRun> {
  const t0 = Date.now();
  return new Promise((resolve) => {
    execFile(process.execPath, [script, ...args], { cwd: opts.cwd ?? repoRoot, env: opts.env ?? process.env, timeout: opts.timeout ?? 60_000 }, (err, stdout, stderr) => {
      const code = err ? (err as { code?: unknown }).code : 0;
      resolve({ code: typeof code === 'number' ? code : 1, stdout, stderr, seconds: (Date.now() - t0) / 1000 });
    });
  });
}

/** `ntml args...` to the end, from the repository root unless `cwd` says otherwise. */
export function runNtml(args: string[], opts: RunOptions = {}): Promise<CommandRun> {
  return runNode(NTML_BIN, args, opts);
}

/** A node process whose stdout and stderr are collected in order, and a promise of its exit code. */
export type OutputProcess = ChildProcess & { output: () => string; exited: Promise<number | null> };

export function spawnNode(args: string[], env: NodeJS.ProcessEnv, cwd: string): OutputProcess {
  const child = spawn(process.execPath, args, { env, cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (d) => (output += d));
  child.stderr!.on('data', (d) => (output += d));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return Object.assign(child, { output: () => output, exited });
}

/**
 * The node processes a test file starts: `spawn` starts one as spawnNode does; `killAll` (for an
 * `after` hook) SIGKILLs those still running and waits for their exit, so that a test that
 * fails midway leaves none behind.
 */
export function spawnedProcesses(): { spawn: typeof spawnNode; killAll: () => Promise<void> } {
  const started: OutputProcess[] = [];
  return {
    spawn(args, env, cwd) {
      const p = spawnNode(args, env, cwd);
      started.push(p);
      return p;
    },
    async killAll() {
      for (const p of started) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
      await Promise.all(started.map((p) => p.exited));
    },
  };
}

/** The environment without the test run's own stack, so that an `ntml` command starts an embedded one. */
export function embeddedEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const k of Object.keys(env)) if (/^NTML_(STORE|S3_|TEMPORAL_ADDRESS|STACK_DIR|PARENT_PID)/.test(k)) delete env[k];
  return env;
}

/** Text of a command that crashed on its way out rather than stopping: grpc-js' closed channel, an uncaught error, a stack trace. */
export const CRASH_TEXT = /Channel has been shut down|Uncaught|UnhandledPromiseRejection|^\s+at .+\(.*:\d+:\d+\)$/m;

/** Whether `pid` is a live process (a zombie, exited but not yet reaped, is not). */
export function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    const state = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.[0];
    return state !== 'Z';
  } catch {
    return false;
  }
}

/**
 * Every process of a training worker whose parent watch names `parentPid`, the worker and its
 * watchdog shell: found by environment and arguments in /proc, so a process the command did not
 * list (or a worker that lost its watchdog) is found too.
 */
export function trainingWorkersOf(parentPid: number): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const environ = readFileSync(`/proc/${entry}/environ`, 'utf8');
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
      const state = readFileSync(`/proc/${entry}/stat`, 'utf8').split(') ')[1]?.[0];
      if (state !== 'Z' && cmdline.includes(path.join('workers', 'training.js')) && environ.split('\0').includes(`NTML_PARENT_PID=${parentPid}`)) found.push(Number(entry));
    } catch {
      // gone meanwhile, or not ours to read
    }
  }
  return found;
}
