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
 * elsewhere, with NTML_DEBUG set, if stderr cannot be reopened or if it is a file not opened for
 * appending, it loads TensorFlow as is (two notices in a log rather than lines lost from it).
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
  if (stderrWritesAtASharedOffset(fs)) {
    load(); // `> log 2>&1`: a reopened stderr would be overwritten by stdout's lines (see below)
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
 * `cmd > log 2>&1`, `(time cmd) 2> log`: stderr is a file written at an offset it shares with
 * stdout or with the shell that opened it. The descriptor reopened through /proc is a new open
 * file with an offset of its own, so the next write at the shared offset (stdout's, or the
 * shell's after the command) lands on top of what stderr wrote meanwhile: progress lines and
 * errors lost from the log. A file opened for appending (`2>> log`) is written at its end
 * whatever the offset, and a terminal or a pipe has no offset: those are safe to reopen.
 */
function stderrWritesAtASharedOffset(fs: typeof import('node:fs')): boolean {
  try {
    if (!fs.fstatSync(2).isFile()) return false;
    const flags = /^flags:\s*([0-7]+)/m.exec(fs.readFileSync('/proc/self/fdinfo/2', 'utf8'));
    const O_APPEND = 0o2000;
    return !flags || (parseInt(flags[1], 8) & O_APPEND) === 0;
  } catch {
    return true; // cannot tell: keep the notices rather than risk the output
  }
}
