/**
 * node dist/infra/stack/main.js start  --dir .ntml/stack [--foreground] [--no-temporal] [--no-s3]
 *                                       [--temporal-port N] [--temporal-ui-port N] [--s3-port N] [--bucket B]
 *                               stop   --dir .ntml/stack
 *                               status --dir .ntml/stack
 *                               env    --dir .ntml/stack
 * `start` (background) leaves the servers running, records their pids in <dir>/stack.json and
 * prints `export NTML_...=...` lines on stdout, so CI can `eval "$(node dist/infra/stack/main.js start --dir D)"`.
 * `--foreground` keeps them attached until SIGINT/SIGTERM. Logs go to stderr.
 * Either way a supervisor restarts a server that dies, on its ports with its data (in this
 * process in the foreground, a detached supervise.js process in the background); `start` on a
 * background stack that lost a server restarts only that server.
 */
import { envToShell, readStackFile, stackDirFromEnv, stackStatus, startLocalStack, stopStack } from './index';

// The AWS SDK warns on every start that releases after January 2027 need Node 22; not actionable here.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

interface Args {
  command: string;
  dir: string;
  foreground: boolean;
  temporal: boolean;
  s3: boolean;
  temporalPort?: number;
  temporalUiPort?: number;
  s3Port?: number;
  bucket?: string;
}

const USAGE = `usage: main.js <start|stop|status|env> [--dir DIR] [--foreground] [--no-temporal] [--no-s3]
       [--temporal-port N] [--temporal-ui-port N] [--s3-port N] [--bucket NAME]   (DIR defaults to $NTML_STACK_DIR, else .ntml/stack)`;

function parseArgs(argv: string[]): Args {
  const [command, ...rest] = argv;
  if (!command || !['start', 'stop', 'status', 'env'].includes(command)) throw new Error(USAGE);
  const args: Args = { command, dir: stackDirFromEnv(), foreground: false, temporal: true, s3: true };
  const num = (flag: string, v: string | undefined): number => {
    const n = Number(v);
    if (!v || !Number.isInteger(n) || n <= 0 || n > 65535) throw new Error(`${flag} needs a port number`);
    return n;
  };
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i];
    switch (a) {
      case '--dir':
        if (!rest[i + 1]) throw new Error('--dir needs a value');
        args.dir = rest[++i];
        break;
      case '--foreground':
        args.foreground = true;
        break;
      case '--no-temporal':
        args.temporal = false;
        break;
      case '--no-s3':
        args.s3 = false;
        break;
      case '--temporal-port':
        args.temporalPort = num(a, rest[++i]);
        break;
      case '--temporal-ui-port':
        args.temporalUiPort = num(a, rest[++i]);
        break;
      case '--s3-port':
        args.s3Port = num(a, rest[++i]);
        break;
      case '--bucket':
        if (!rest[i + 1]) throw new Error('--bucket needs a value');
        args.bucket = rest[++i];
        break;
      default:
        throw new Error(`unknown argument ${a}\n${USAGE}`);
    }
  }
  return args;
}

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2));
  const log = (m: string) => process.stderr.write(`[stack] ${m}\n`);
  switch (args.command) {
    case 'start': {
      const stack = await startLocalStack({
        dir: args.dir,
        temporal: args.temporal,
        s3: args.s3,
        temporalPort: args.temporalPort,
        temporalUiPort: args.temporalUiPort,
        s3Port: args.s3Port,
        bucket: args.bucket,
        detached: !args.foreground,
        log,
      });
      process.stdout.write(`${envToShell(stack.env)}\n`);
      if (stack.healed.length) log(`restarted ${stack.healed.join(' and ')}, which had died; the rest of the stack kept running`);
      if (!args.foreground) {
        log(`running in the background; stop with: node dist/infra/stack/main.js stop --dir ${args.dir}`);
        return 0;
      }
      log('running in the foreground; Ctrl-C stops the stack');
      // Keep the event loop alive until a signal arrives; a server that dies meanwhile is
      // restarted by the stack's supervisor (in this process) on its ports with its data.
      const keepAlive = setInterval(() => undefined, 1 << 30);
      await new Promise<void>((resolve) => {
        const done = () => resolve();
        process.once('SIGINT', done);
        process.once('SIGTERM', done);
        process.once('SIGHUP', done);
      });
      clearInterval(keepAlive);
      await stack.stop();
      log('stopped');
      return 0;
    }
    case 'stop': {
      const { stopped } = await stopStack(args.dir);
      log(stopped.length ? `stopped ${stopped.join(', ')}` : 'nothing was running');
      return 0;
    }
    case 'status': {
      const status = await stackStatus(args.dir);
      process.stdout.write(`${JSON.stringify(status, null, 2)}\n`);
      return status.ok ? 0 : 1;
    }
    case 'env': {
      const info = readStackFile(args.dir);
      if (!info || info.stoppedAt) {
        log(`no running stack recorded in ${args.dir}`);
        return 1;
      }
      process.stdout.write(`${envToShell(info.env)}\n`);
      return 0;
    }
  }
  return 2;
}

main().then(
  (code) => process.exit(code),
  (err: Error) => {
    process.stderr.write(`[stack] ${err.message}\n`);
    process.exit(1);
  },
);
