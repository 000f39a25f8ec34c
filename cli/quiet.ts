/**
 * tfjs prints a deprecation notice on every model load through the multi-argument
 * tf.io.fromMemory() (core/models/layersFormat.ts); in a CLI run that is a dozen identical
 * lines between the progress lines. This drops exactly that notice and nothing else.
 */
const NOTICES = ['Please call tf.io.fromMemory() with only one argument'];

let installed = false;

export function silenceKnownNotices(): void {
  if (installed) return;
  installed = true;
  const warn = console.warn.bind(console);
  console.warn = (...args: unknown[]) => {
    if (typeof args[0] === 'string' && NOTICES.some((n) => (args[0] as string).startsWith(n))) return;
    warn(...args);
  };
}

/**
 * Loads TensorFlow (core/tf.ts) with file descriptor 2 pointed at /dev/null: the native library
 * writes absl's "All log messages before absl::InitializeLog() is called ..." and the oneDNN
 * notice straight to fd 2 while it loads, before TF_CPP_MIN_LOG_LEVEL can apply, so no
 * JavaScript-level filter sees them. Linux only (it reopens the original through /proc);
 * elsewhere, with NTML_DEBUG set, if stderr cannot be reopened or if it shares stdout's file, it
 * loads TensorFlow as is.
 * Runs before any worker or Temporal runtime thread exists, so nothing else writes meanwhile.
 */
export function loadTensorFlowQuietly(): void {
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const load = () => require('../core/tf') as unknown;
  const fs = require('node:fs') as typeof import('node:fs');
  if (process.platform !== 'linux' || process.env.NTML_DEBUG || !fs.existsSync('/proc/self/fd/2')) {
    load();
    return;
  }
  if (stdoutSharesStderrFile(fs)) {
    load(); // `> log 2>&1`: a reopened stderr would write over stdout's lines (see below)
    return;
  }
  let saved: number;
  try {
    // append mode: reopening a redirected stderr file for writing must not truncate it
    saved = fs.openSync('/proc/self/fd/2', 'a');
  } catch {
    load(); // a socket, for instance, cannot be reopened: keep the notices rather than lose stderr
    return;
  }
  try {
    fs.closeSync(2);
    const devnull = fs.openSync('/dev/null', 'w'); // the lowest free descriptor: 2
    if (devnull !== 2) fs.closeSync(devnull);
    load();
  } finally {
    try {
      fs.closeSync(2);
    } catch {
      // already closed
    }
    fs.openSync(`/proc/self/fd/${saved}`, 'a'); // back on 2
    fs.closeSync(saved);
  }
}

/**
 * `cmd > log 2>&1`: stdout and stderr share one open file and its offset. The descriptor reopened
 * through /proc is a new open file with an offset of its own, so stdout's next write would land on
 * top of what stderr wrote meanwhile (progress lines and errors lost from the log). Append mode
 * (`>> log 2>&1`) writes at the end whatever the offset, so only that case is safe to reopen.
 */
function stdoutSharesStderrFile(fs: typeof import('node:fs')): boolean {
  try {
    const out = fs.fstatSync(1);
    const err = fs.fstatSync(2);
    if (!err.isFile() || out.dev !== err.dev || out.ino !== err.ino) return false;
    const flags = /^flags:\s*([0-7]+)/m.exec(fs.readFileSync('/proc/self/fdinfo/2', 'utf8'));
    const O_APPEND = 0o2000;
    return !flags || (parseInt(flags[1], 8) & O_APPEND) === 0;
  } catch {
    return true; // cannot tell: keep the notices rather than risk the output
  }
}
