/** A benchmark child process that answers with one JSON line (no TensorFlow here: drivers stay light). */
import { spawn } from 'node:child_process';
import * as path from 'node:path';

/** Runs a child whose last stdout line is one JSON object, and returns that object. */
export function runChild<T>(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<T> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('error', reject);
    child.on('close', (code) => {
      const line = out.trim().split('\n').pop() ?? '';
      if (code !== 0 || !line.startsWith('{')) {
        reject(new Error(`${path.basename(args[0] ?? cmd)} exited ${code}:\n${err.slice(-2000)}`));
        return;
      }
      resolve(JSON.parse(line) as T);
    });
  });
}
