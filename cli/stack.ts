/** `ntml stack start|stop|status`: the local Temporal + S3 stack, in the background. */
import { commandUsage, flag, stringOption, type ParsedArgs } from './args';
import { stackStart as stackStartSpec } from './commands';
import { UsageError, UserError } from './errors';
import type { Io } from './purify';
import { stackDir } from './temporal';

function dirOf(args: ParsedArgs): string {
  return stringOption(args, 'dir') ?? stackDir();
}

export async function stackStart(args: ParsedArgs, io: Io): Promise<number> {
  const dir = dirOf(args);
  const ui = stringOption(args, 'ui-port');
  let uiPort: number | undefined;
  if (ui !== undefined) {
    uiPort = Number(ui);
    if (!Number.isInteger(uiPort) || uiPort <= 0 || uiPort > 65535) throw new UsageError(`--ui-port needs a port number, got "${ui}"`, commandUsage(stackStartSpec, true));
  }
  const { startLocalStack, envToShell } = await import('../infra/stack/index');
  const t0 = Date.now();
  io.stderr.write(`starting the local stack in ${dir} ...\n`);
  let stack;
  try {
    // Temporal's Web UI on loopback (a free port unless --ui-port), so long sweeps can be watched there
    stack = await startLocalStack({ dir, detached: true, temporalUiPort: uiPort, temporalUi: true, log: () => undefined });
  } catch (err) {
    throw new UserError(`cannot start the stack: ${(err as Error).message.split('\n')[0]}`);
  }
  io.stdout.write(`${envToShell(stack.env)}\n`);
  io.stderr.write(
    [
      `stack running in the background (up in ${((Date.now() - t0) / 1000).toFixed(1)} s):`,
      `  Temporal  ${stack.env.NTML_TEMPORAL_ADDRESS}`,
      ...(stack.temporal?.uiPort !== undefined ? [`  Web UI    http://127.0.0.1:${stack.temporal.uiPort}`] : []),
      `  S3        ${stack.env.NTML_S3_ENDPOINT}  (store ${stack.env.NTML_STORE})`,
      `"ntml purify" uses it (workers in its own process); for separate workers: eval "$(ntml stack start)" prints these exports.`,
      `stop it with: ntml stack stop${dir === stackDir() ? '' : ` --dir ${dir}`}`,
    ].join('\n') + '\n',
  );
  return 0;
}

export async function stackStop(args: ParsedArgs, io: Io): Promise<number> {
  const dir = dirOf(args);
  const { stopStack } = await import('../infra/stack/index');
  const { stopped } = await stopStack(dir);
  io.stdout.write(stopped.length ? `stopped ${stopped.join(', ')}\n` : `no stack was running in ${dir}\n`);
  return 0;
}

export async function stackStatusCmd(args: ParsedArgs, io: Io): Promise<number> {
  const dir = dirOf(args);
  const { stackStatus } = await import('../infra/stack/index');
  const status = await stackStatus(dir);
  if (flag(args, 'json')) {
    io.stdout.write(`${JSON.stringify(status, null, 2)}\n`);
    return status.ok ? 0 : 1;
  }
  if (!status.recorded) {
    io.stdout.write(`no stack in ${dir} (start one with: ntml stack start)\n`);
    return 1;
  }
  const state = (s: { running: boolean; healthy: boolean } | undefined) =>
    !s ? 'not part of this stack' : s.healthy ? 'running, healthy' : s.running ? 'running, NOT answering' : 'stopped';
  const lines = [
    `stack    ${status.dir}${status.stoppedAt ? `  (stopped ${status.stoppedAt})` : ''}`,
    `Temporal ${status.temporal?.address ?? '-'}  ${state(status.temporal)}${status.temporal ? `  (pid ${status.temporal.pid})` : ''}`,
    ...(status.temporal?.ui && status.temporal.running ? [`Web UI   ${status.temporal.ui}`] : []),
    `S3       ${status.s3?.endpoint ?? '-'}  ${state(status.s3)}${status.s3 ? `  (pid ${status.s3.pid})` : ''}`,
  ];
  if (status.ok) lines.push(`store    ${status.env.NTML_STORE ?? '-'}`);
  io.stdout.write(`${lines.join('\n')}\n`);
  return status.ok ? 0 : 1;
}
