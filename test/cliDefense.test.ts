/** `ntml defense list` through bin/ntml: every defense with its defaults; bad subcommands exit 2. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { defenseNames } from '../core/defenses/configs';

const REPO = path.resolve(__dirname, '..', '..');
const BIN = path.join(REPO, 'bin', 'ntml');
const ntml = (...args: string[]) => spawnSync(BIN, args, { cwd: REPO, encoding: 'utf8', timeout: 60_000 });

test('ntml defense list names every defense, its default budget and defaults', () => {
  const r = ntml('defense', 'list');
  assert.equal(r.status, 0, r.stderr);
  for (const name of defenseNames) assert.match(r.stdout, new RegExp(`^${name}\\s`, 'm'), `lists ${name}`);
  assert.match(r.stdout, /^ft\s+FT\s+default budget 5%/m);
  assert.match(r.stdout, /"steps":1000/);
  assert.match(r.stdout, /^ibau\s+I-BAU\s/m);
});

test('ntml defense with a missing or unknown subcommand exits 2 with usage', () => {
  for (const args of [['defense'], ['defense', 'show']]) {
    const r = ntml(...args);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /usage: ntml defense list/);
  }
});
