/**
 * Which Temporal server a command talks to, and the client connection to it. Loaded only by
 * commands that need a server, so --help and config validation start nothing.
 */
import { Client, Connection } from '@temporalio/client';
import { groupAlive, readStackFile, stackDirFromEnv, type StackEnv } from '../infra/stack/index';
import { UsageError, UserError } from './errors';

/** The local stack's folder: --stack-dir (main.ts puts it in NTML_STACK_DIR), $NTML_STACK_DIR, else .ntml/stack. */
export const stackDir = (): string => stackDirFromEnv();

export interface TemporalTarget {
  address: string;
  /** where the address came from, for messages */
  source: string;
  /** a local stack of this machine (plaintext, whatever the TLS variables say) */
  local?: boolean;
}

/** The stack recorded in DIR/stack.json if it is not marked stopped and its Temporal server still runs. */
export function recordedStack(dir = stackDir()) {
  const info = readStackFile(dir);
  if (!info || info.stoppedAt || !info.temporal || !groupAlive(info.temporal.pgid)) return undefined;
  return info;
}

/** Fills the store settings (NTML_STORE, NTML_S3_*) from a stack the user did not override. */
export function adoptStackEnv(env: StackEnv): void {
  if (process.env.NTML_STORE) return;
  for (const [k, v] of Object.entries(env)) {
    if (k !== 'NTML_TEMPORAL_ADDRESS' && v !== undefined) process.env[k] = v;
  }
}

/**
 * --address, else $NTML_TEMPORAL_ADDRESS, else the stack in .ntml/stack (whose store settings
 * are adopted too); undefined when there is none.
 */
export function findTarget(addressFlag: string | undefined): TemporalTarget | undefined {
  if (addressFlag) return { address: checkAddress(addressFlag, '--address'), source: '--address' };
  const fromEnv = process.env.NTML_TEMPORAL_ADDRESS?.trim();
  if (fromEnv) return { address: checkAddress(fromEnv, 'NTML_TEMPORAL_ADDRESS'), source: 'NTML_TEMPORAL_ADDRESS' };
  const stack = recordedStack();
  if (stack?.temporal) {
    adoptStackEnv(stack.env);
    return { address: stack.temporal.address, source: `the stack in ${stackDir()}`, local: true };
  }
  return undefined;
}

export function requireTarget(addressFlag: string | undefined): TemporalTarget {
  const target = findTarget(addressFlag);
  if (!target) {
    throw new UsageError(
      `no Temporal server to ask: pass --address HOST:PORT, set NTML_TEMPORAL_ADDRESS, or start the local stack with "ntml stack start"\n` +
        `(runs of an embedded "ntml purify" are kept in ${stackDir()}; "ntml stack start" brings that server back)`,
    );
  }
  return target;
}

function checkAddress(value: string, what: string): string {
  if (!/^[^\s:/]+:\d{1,5}$/.test(value) && !/^\[[0-9a-fA-F:]+\]:\d{1,5}$/.test(value)) {
    throw new UsageError(`${what} must be HOST:PORT (e.g. 127.0.0.1:7233), got "${value}"`);
  }
  return value;
}

export function namespaceFrom(flagValue: string | undefined): string {
  return flagValue ?? process.env.NTML_NAMESPACE ?? 'default';
}

/**
 * The client connection. TLS/mTLS and the API key come from the same NTML_TEMPORAL_TLS_* and
 * NTML_TEMPORAL_API_KEY* variables as the workers' (workers/env.ts), the payload codec from
 * NTML_PAYLOAD_KEY_FILE; with telemetry on, starting a run joins the command's trace.
 * `plaintext`: the embedded stack, which has no TLS whatever the environment says.
 */
export async function connectClient(
  target: TemporalTarget,
  namespace: string,
  opts: { plaintext?: boolean } = { plaintext: target.local },
): Promise<{ client: Client; connection: Connection }> {
  const { temporalSecurity, WorkerConfigError } = await import('../workers/env');
  const { dataConverterFromEnv, PayloadKeyError } = await import('../workers/payloadCodec');
  const { clientInterceptors } = await import('../telemetry/temporal');
  let security: Awaited<ReturnType<typeof temporalSecurity>>;
  let dataConverter: ReturnType<typeof dataConverterFromEnv>;
  try {
    security = opts.plaintext ? {} : temporalSecurity();
    dataConverter = dataConverterFromEnv();
  } catch (err) {
    if (err instanceof WorkerConfigError || err instanceof PayloadKeyError) throw new UsageError(err.message);
    throw err;
  }
  let connection: Connection;
  try {
    connection = await Connection.connect({
      address: target.address,
      connectTimeout: 10_000,
      ...(security.tls ? { tls: security.tls } : {}),
      ...(security.apiKey ? { apiKey: security.apiKey } : {}),
    });
  } catch (err) {
    throw new UserError(`cannot reach Temporal at ${target.address} (from ${target.source}): ${(err as Error).message.split('\n')[0]}`);
  }
  const interceptors = clientInterceptors();
  return { client: new Client({ connection, namespace, dataConverter, ...(interceptors ? { interceptors } : {}) }), connection };
}
