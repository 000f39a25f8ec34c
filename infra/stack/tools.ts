import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { findRepoRoot } from '../../store/repoRoot';

const execFileAsync = promisify(execFile);

export type ToolName = 'temporal' | 'versitygw';

/** Pinned versions; infra/setup.sh installs exactly these with `go install`. */
export const PINNED_TOOLS: Record<ToolName, { module: string; version: string }> = {
  temporal: { module: 'github.com/temporalio/cli/cmd/temporal', version: 'v1.5.1' },
  versitygw: { module: 'github.com/versity/versitygw/cmd/versitygw', version: 'v1.7.0' },
};

/** NTML_TOOLS_DIR, else <repo root>/.tools/bin. */
export function toolsDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.NTML_TOOLS_DIR) return path.resolve(env.NTML_TOOLS_DIR);
  const root = findRepoRoot();
  if (!root) throw new Error('cannot find the ntml checkout (package.json named "ntml") to locate .tools/bin; set NTML_TOOLS_DIR');
  return path.join(root, '.tools', 'bin');
}

export function toolPath(name: ToolName, env: NodeJS.ProcessEnv = process.env): string {
  const file = path.join(toolsDir(env), name);
  if (!existsSync(file)) {
    const pin = PINNED_TOOLS[name];
    throw new Error(
      `${name} not found at ${file}. Run \`bash infra/setup.sh\` (it runs \`go install ${pin.module}@${pin.version}\` into .tools/bin), or set NTML_TOOLS_DIR to a directory holding it.`,
    );
  }
  return file;
}

const versionCache = new Map<string, string>();

/**
 * A one-line version description: the binary's own --version output, plus the pinned module
 * version recorded by infra/setup.sh when the binary does not know it (go install builds of the
 * Temporal CLI report 0.0.0-DEV).
 */
export async function toolVersion(name: ToolName, env: NodeJS.ProcessEnv = process.env): Promise<string> {
  const file = toolPath(name, env);
  const cached = versionCache.get(file);
  if (cached) return cached;
  let text: string;
  try {
    const { stdout, stderr } = await execFileAsync(file, ['--version'], { timeout: 15_000 });
    text = `${stdout}\n${stderr}`.split('\n').map((l) => l.trim()).filter(Boolean).join('; ');
  } catch (err) {
    text = `unknown (--version failed: ${(err as Error).message.split('\n')[0]})`;
  }
  const stamp = path.join(path.dirname(path.dirname(file)), 'stamps', name);
  if (existsSync(stamp)) {
    const installed = readFileSync(stamp, 'utf8').trim();
    text = `${text} [installed ${PINNED_TOOLS[name].module}@${installed}]`;
  }
  versionCache.set(file, text);
  return text;
}
