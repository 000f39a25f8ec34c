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
 * elsewhere, with NTML_DEBUG set, or if stderr cannot be reopened, it loads TensorFlow as is.
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
