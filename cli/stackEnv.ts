/**
 * `ntml stack env`: the exports for workers and shells of a stack that is already running
 * (`ntml stack start` refuses to start a second one, so its exports are not printed again).
 * Prints nothing on stdout unless every server of the stack answers, so
 * `eval "$(ntml stack env)"` never exports settings of a dead stack.
 */
import { stackDirOption, stringOption, type CommandSpec, type ParsedArgs } from './args';
import { UserError } from './errors';
import type { Io } from './purify';

export const stackEnvSpec: CommandSpec = {
  name: 'stack env',
  brief: 'print the exports of the running local stack (eval "$(ntml stack env)")',
  summary: 'Print `export NTML_...=...` lines for workers and other shells of the stack that is running (exit code 1 when none is).',
  options: [{ name: 'dir', value: 'DIR', help: 'stack state folder (the same as --stack-dir)' }, stackDirOption],
  details: 'Long-running workers (dist/workers/*.js, e.g. for audit schedules) need these settings.',
};

export async function stackEnv(args: ParsedArgs, io: Io): Promise<number> {
  const { stackDir } = await import('./temporal');
  const dir = stringOption(args, 'dir') ?? stackDir();
  const { stackStatus, envToShell } = await import('../infra/stack/index');
  const status = await stackStatus(dir);
  if (!status.recorded) throw new UserError(`no stack in ${dir} (start one with: eval "$(ntml stack start)")`);
  if (!status.ok) {
    const down = [status.temporal && !status.temporal.healthy ? 'Temporal' : undefined, status.s3 && !status.s3.healthy ? 'S3' : undefined].filter(Boolean);
    throw new UserError(`the stack in ${dir} is not running (${down.join(' and ')} not answering${status.stoppedAt ? `; stopped ${status.stoppedAt}` : ''}); start it with: eval "$(ntml stack start)"`);
  }
  io.stdout.write(`${envToShell(status.env)}\n`);
  return 0;
}
