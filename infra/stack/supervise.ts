/**
 * node dist/infra/stack/supervise.js DIR
 * The supervisor of a background stack (`ntml stack start`): a detached process that restarts
 * a dead server of DIR/stack.json on its ports with its data (infra/stack/supervisor.ts). It
 * exits on SIGTERM (what `stack stop` sends first), once the stack is marked stopped, or when
 * stack.json names another supervisor (a newer `stack start` replaced this one).
 */
import { readStackFile } from './stackFile';
import { superviseStack } from './supervisor';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

async function main(): Promise<number> {
  const dir = process.argv[2];
  if (!dir) {
    process.stderr.write('usage: supervise.js DIR\n');
    return 2;
  }
  const log = (m: string) => process.stderr.write(`${new Date().toISOString()} [supervisor ${process.pid}] ${m}\n`);
  const supervisor = superviseStack({ dir, log });
  log(`supervising the stack in ${dir}`);
  const reason = await new Promise<string>((resolve) => {
    for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.once(sig, () => resolve(sig));
    setInterval(() => {
      const info = readStackFile(dir);
      if (!info || info.stoppedAt) resolve('the stack was stopped');
      else if (info.supervisor && info.supervisor.pid !== process.pid) resolve(`replaced by supervisor ${info.supervisor.pid}`);
    }, 1000);
  });
  await supervisor.stop();
  log(`exiting (${reason})`);
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err: Error) => {
    process.stderr.write(`[supervisor] ${err.stack ?? err.message}\n`);
    process.exit(1);
  },
);
