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
