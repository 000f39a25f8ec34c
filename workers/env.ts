/**
 * Worker settings from the environment (deployments configure workers this way). Secrets
 * (TLS keys, the Temporal Cloud API key, the payload key) are read from files or the
 * environment here, on the worker, and never travel through Temporal.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import type { TLSConfig } from '@temporalio/client';

export class WorkerConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'WorkerConfigError';
  }
}

/** How to reach the Temporal frontend: plaintext (local stack), TLS, mTLS, or Temporal Cloud with an API key. */
export interface TemporalSecurity {
  /** undefined: plaintext */
  tls?: TLSConfig;
  apiKey?: string;
}

export function workerEnv(env: NodeJS.ProcessEnv = process.env) {
  const address = env.NTML_TEMPORAL_ADDRESS;
  if (!address) {
    throw new WorkerConfigError('NTML_TEMPORAL_ADDRESS is not set: the Temporal frontend address, e.g. 127.0.0.1:7233');
  }
  const grace = Number(env.NTML_SHUTDOWN_GRACE_SECONDS ?? '60');
  if (!Number.isFinite(grace) || grace <= 0) {
    // zero would cancel the running epoch on every deploy instead of letting it checkpoint
    throw new WorkerConfigError(`NTML_SHUTDOWN_GRACE_SECONDS must be a positive number of seconds, got "${env.NTML_SHUTDOWN_GRACE_SECONDS}"`);
  }
  return {
    address,
    namespace: env.NTML_NAMESPACE ?? 'default',
    orchestrationTaskQueue: env.NTML_ORCHESTRATION_TASK_QUEUE,
    trainingTaskQueue: env.NTML_TRAINING_TASK_QUEUE,
    slots: workerSlots(env),
    shutdownGraceSeconds: grace,
    security: temporalSecurity(env),
  };
}

/**
 * Concurrent training activities per worker: one per device. NTML_WORKER_SLOTS wins; otherwise
 * a GPU worker (NTML_BACKEND=gpu) takes one slot per visible GPU when that can be determined,
 * and a CPU worker takes 1 (one training activity already keeps every core busy).
 */
export function workerSlots(env: NodeJS.ProcessEnv = process.env, probe: () => number | undefined = probeGpuCount): number {
  const explicit = env.NTML_WORKER_SLOTS?.trim();
  if (explicit) {
    const slots = Number(explicit);
    if (!Number.isInteger(slots) || slots < 1) throw new WorkerConfigError(`NTML_WORKER_SLOTS must be a positive integer, got "${explicit}"`);
    return slots;
  }
  if ((env.NTML_BACKEND ?? 'cpu').toLowerCase() !== 'gpu') return 1;
  const count = visibleGpuCount(env) ?? probe();
  return count && count > 0 ? count : 1;
}

/**
 * GPUs this process may use, from the variables CUDA and the NVIDIA container runtime set
 * (Kubernetes' device plugin fills NVIDIA_VISIBLE_DEVICES with the allocated GPUs' ids).
 * undefined when they do not say ("all", unset).
 */
export function visibleGpuCount(env: NodeJS.ProcessEnv): number | undefined {
  for (const name of ['CUDA_VISIBLE_DEVICES', 'NVIDIA_VISIBLE_DEVICES'] as const) {
    const value = env[name]?.trim();
    if (value === undefined || value === '' || value === 'all') continue;
    if (value === 'none' || value === 'void' || value === 'NoDevFiles' || value === '-1') return 0;
    return value.split(',').filter((s) => s.trim() !== '').length;
  }
  return undefined;
}

/** GPUs the NVIDIA driver reports (`nvidia-smi -L`, else /proc/driver/nvidia/gpus); undefined without a driver. */
export function probeGpuCount(): number | undefined {
  const smi = spawnSync('nvidia-smi', ['-L'], { encoding: 'utf8', timeout: 10_000 });
  if (smi.status === 0) return smi.stdout.split('\n').filter((l) => l.startsWith('GPU ')).length;
  try {
    return readdirSync('/proc/driver/nvidia/gpus').length;
  } catch {
    return undefined;
  }
}

function readSecretFile(variable: string, file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    // the path, never the content: these files hold keys
    throw new WorkerConfigError(`${variable}=${file} cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
}

const truthy = (v: string | undefined) => v !== undefined && /^(1|true|yes|on)$/i.test(v.trim());

/**
 * The Temporal connection's TLS and authentication:
 *   NTML_TEMPORAL_TLS=true                      TLS, server verified against the system's roots
 *   NTML_TEMPORAL_TLS_CA=FILE                   PEM root CA of the server (self-managed clusters)
 *   NTML_TEMPORAL_TLS_CERT=FILE + _KEY=FILE     client certificate and key (mTLS)
 *   NTML_TEMPORAL_TLS_SERVER_NAME=NAME          name to verify instead of the address' host
 *   NTML_TEMPORAL_API_KEY_FILE=FILE             Temporal Cloud API key (or NTML_TEMPORAL_API_KEY)
 * Any of them turns TLS on; none of them is a plaintext connection (the local stack).
 */
export function temporalSecurity(env: NodeJS.ProcessEnv = process.env): TemporalSecurity {
  const ca = env.NTML_TEMPORAL_TLS_CA?.trim();
  const cert = env.NTML_TEMPORAL_TLS_CERT?.trim();
  const key = env.NTML_TEMPORAL_TLS_KEY?.trim();
  const serverName = env.NTML_TEMPORAL_TLS_SERVER_NAME?.trim();
  const apiKeyFile = env.NTML_TEMPORAL_API_KEY_FILE?.trim();
  const apiKeyValue = env.NTML_TEMPORAL_API_KEY?.trim();
  if (Boolean(cert) !== Boolean(key)) {
    throw new WorkerConfigError('mTLS needs both NTML_TEMPORAL_TLS_CERT and NTML_TEMPORAL_TLS_KEY (PEM files), or neither');
  }
  if (apiKeyFile && apiKeyValue) throw new WorkerConfigError('set NTML_TEMPORAL_API_KEY_FILE or NTML_TEMPORAL_API_KEY, not both');
  const explicitTls = env.NTML_TEMPORAL_TLS?.trim();
  if (explicitTls !== undefined && explicitTls !== '' && !truthy(explicitTls) && !/^(0|false|no|off)$/i.test(explicitTls)) {
    throw new WorkerConfigError(`NTML_TEMPORAL_TLS must be true or false, got "${explicitTls}"`);
  }
  const apiKey = apiKeyFile ? readSecretFile('NTML_TEMPORAL_API_KEY_FILE', apiKeyFile).toString('utf8').trim() : apiKeyValue || undefined;
  if (apiKeyFile && !apiKey) throw new WorkerConfigError(`NTML_TEMPORAL_API_KEY_FILE=${apiKeyFile} is empty`);
  const wantsTls = truthy(explicitTls) || Boolean(ca || cert || serverName || apiKey);
  if (!wantsTls) return {};
  if (explicitTls !== undefined && /^(0|false|no|off)$/i.test(explicitTls)) {
    throw new WorkerConfigError('NTML_TEMPORAL_TLS=false contradicts the TLS files or API key that are set (an API key needs TLS)');
  }
  const tls: TLSConfig = {};
  if (ca) tls.serverRootCACertificate = readSecretFile('NTML_TEMPORAL_TLS_CA', ca);
  if (cert && key) tls.clientCertPair = { crt: readSecretFile('NTML_TEMPORAL_TLS_CERT', cert), key: readSecretFile('NTML_TEMPORAL_TLS_KEY', key) };
  if (serverName) tls.serverNameOverride = serverName;
  return { tls, ...(apiKey ? { apiKey } : {}) };
}

/** One line for start-up messages; names what is used, never a secret. */
export function describeSecurity(s: TemporalSecurity): string {
  if (!s.tls) return 'plaintext';
  const parts = ['TLS'];
  if (s.tls.clientCertPair) parts.push('client certificate (mTLS)');
  if (s.tls.serverRootCACertificate) parts.push('custom CA');
  if (s.tls.serverNameOverride) parts.push(`server name ${s.tls.serverNameOverride}`);
  if (s.apiKey) parts.push('API key');
  return parts.join(', ');
}
