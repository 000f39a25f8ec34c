/**
 * The SDK runtime of a worker process: its log level (NTML_LOG_LEVEL, default INFO) is the
 * one logging setting deployments change. Installed before the first connection, since the
 * SDK creates a default runtime on first use and it cannot be replaced afterwards.
 */
import { DefaultLogger, Runtime, type LogLevel } from '@temporalio/worker';
import { WorkerConfigError } from './env';

const LEVELS: LogLevel[] = ['TRACE', 'DEBUG', 'INFO', 'WARN', 'ERROR'];

export function logLevel(env: NodeJS.ProcessEnv = process.env): LogLevel {
  const raw = (env.NTML_LOG_LEVEL ?? 'INFO').trim().toUpperCase();
  if (!LEVELS.includes(raw as LogLevel)) throw new WorkerConfigError(`NTML_LOG_LEVEL must be one of ${LEVELS.join(', ')}, got "${env.NTML_LOG_LEVEL}"`);
  return raw as LogLevel;
}

export function installWorkerRuntime(env: NodeJS.ProcessEnv = process.env): void {
  Runtime.install({ logger: new DefaultLogger(logLevel(env)) });
}
