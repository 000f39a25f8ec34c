/**
 * The one place that loads TensorFlow.js. Training needs the native TensorFlow backend:
 * the pure-JS backend is ~1000x slower and the wasm one cannot train conv nets, so we
 * never fall back silently. NTML_BACKEND=gpu selects @tensorflow/tfjs-node-gpu.
 */
import type * as TF from '@tensorflow/tfjs-node';

export type BackendKind = 'cpu' | 'gpu';

export class BackendUnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BackendUnavailableError';
  }
}

function requestedBackend(): BackendKind {
  const value = (process.env.NTML_BACKEND ?? 'cpu').toLowerCase();
  if (value !== 'cpu' && value !== 'gpu') {
    throw new BackendUnavailableError(`NTML_BACKEND must be "cpu" or "gpu", got "${process.env.NTML_BACKEND}"`);
  }
  return value;
}

function load(kind: BackendKind): typeof TF {
  // TensorFlow's C++ logging floods stderr with CPU-feature notices otherwise.
  process.env.TF_CPP_MIN_LOG_LEVEL ??= '2';
  // TensorFlow turns its oneDNN kernels on by default only on some Intel CPUs; without them
  // (e.g. on AMD) convolution backprop runs about twice as slowly (docs/performance.md).
  // TF_ENABLE_ONEDNN_OPTS=0 keeps TensorFlow's own default.
  process.env.TF_ENABLE_ONEDNN_OPTS ??= '1';
  const pkg = kind === 'gpu' ? '@tensorflow/tfjs-node-gpu' : '@tensorflow/tfjs-node';
  let mod: typeof TF;
  try {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    mod = require(pkg);
  } catch (err) {
    const fix =
      kind === 'gpu'
        ? 'GPU workers need @tensorflow/tfjs-node-gpu built against a GPU libtensorflow (see docs/deployment.md), or set NTML_BACKEND=cpu.'
        : 'Run `bash infra/setup.sh` to build the native binding from the tensorflow-cpu wheel.';
    throw new BackendUnavailableError(
      `The native TensorFlow backend (${pkg}) could not be loaded: ${(err as Error).message.split('\n')[0]}. ${fix}`,
    );
  }
  if (mod.getBackend() !== 'tensorflow') {
    throw new BackendUnavailableError(
      `${pkg} loaded but the active backend is "${mod.getBackend()}", not the native "tensorflow" backend. Run \`bash infra/setup.sh\`.`,
    );
  }
  return mod;
}

export const backendKind: BackendKind = requestedBackend();
export const tf: typeof TF = load(backendKind);

/** Version of the native TensorFlow library the binding runs on (e.g. "2.21.0"). */
export function nativeTensorflowVersion(): string {
  const backend = tf.backend() as unknown as { binding?: { TF_Version?: string } };
  return backend.binding?.TF_Version ?? 'unknown';
}
