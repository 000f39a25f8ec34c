/**
 * The test command: starts one real local stack (Temporal dev server + versitygw) for the
 * whole run, hands its addresses to every test file through the environment, runs the
 * compiled tests with node's test runner (one file at a time: 2 cores), then stops the stack.
 *   node dist/test/support/runTests.js [name-filter ...]
 */
import { spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { startLocalStack } from '../../infra/stack';

async function testFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await fs.readdir(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await testFiles(full)));
    else if (entry.name.endsWith('.test.js')) out.push(full);
  }
  return out.sort();
}

async function main() {
  const distTest = path.resolve(__dirname, '..');
  const repo = path.resolve(distTest, '..', '..');
  const filters = process.argv.slice(2);
  let files = await testFiles(distTest);
  if (filters.length) files = files.filter((f) => filters.some((s) => f.includes(s)));
  if (files.length === 0) throw new Error(`no test files match ${filters.join(', ')}`);

  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';
  // one stack per test command, so test runs started side by side do not share servers
  const stackDir = path.join(repo, '.ntml', `test-stack-${process.pid}`);
  await fs.rm(stackDir, { recursive: true, force: true });
  const t0 = Date.now();
  const stack = await startLocalStack({ dir: stackDir, log: (m) => console.log(`[stack] ${m}`) });
  console.log(`[stack] up in ${((Date.now() - t0) / 1000).toFixed(1)} s: Temporal ${stack.env.NTML_TEMPORAL_ADDRESS}, S3 ${stack.env.NTML_S3_ENDPOINT}`);

  const env = {
    ...process.env,
    ...stack.env,
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
    NTML_TEST_FIXTURES: path.join(repo, '.ntml', 'test-fixtures'),
  };
  const code = await new Promise<number>((resolve) => {
    const child = spawn(process.execPath, ['--test', '--test-concurrency=1', '--test-reporter=spec', ...files], {
      env,
      stdio: 'inherit',
      cwd: repo,
    });
    const forward = (sig: NodeJS.Signals) => child.kill(sig);
    process.on('SIGINT', forward).on('SIGTERM', forward);
    child.on('exit', (c, sig) => resolve(c ?? (sig ? 1 : 0)));
  });
  await stack.stop();
  await fs.rm(stackDir, { recursive: true, force: true }).catch(() => undefined);
  process.exit(code);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
