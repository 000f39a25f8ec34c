/** `ntml attack preview --run ID` on the test stack: its output text, row names and decoded PNG. */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { Writable } from 'node:stream';
import { PNG } from 'pngjs';
import { attackCommand } from '../../cli/attack';

class Capture extends Writable {
  text = '';
  override _write(chunk: Buffer, _enc: string, cb: () => void): void {
    this.text += chunk.toString();
    cb();
  }
}

export async function previewRunPng(runId: string, count: number): Promise<{ out: string; rows: string[]; png: PNG }> {
  const dir = mkdtempSync(path.join(tmpdir(), 'ntml-preview-run-'));
  try {
    const file = path.join(dir, 'trigger.png');
    const stdout = new Capture();
    const stderr = new Capture();
    const code = await attackCommand(['preview', '--run', runId, '--count', String(count), '--out', file], { stdout, stderr });
    assert.equal(code, 0, stderr.text);
    const rows = /rows: (.*)/.exec(stdout.text)?.[1].split(' / ') ?? [];
    return { out: stdout.text, rows, png: PNG.sync.read(readFileSync(file)) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
