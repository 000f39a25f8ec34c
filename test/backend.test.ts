/** The native backend is loaded, or the program says why and how to fix it: never a silent fallback. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { tf, backendKind, nativeTensorflowVersion } from '../core/tf';

const repo = path.resolve(__dirname, '..', '..');

test('training runs on the native TensorFlow backend built from the 2.21.0 wheel', () => {
  assert.equal(backendKind, 'cpu');
  assert.equal(tf.getBackend(), 'tensorflow');
  assert.equal(nativeTensorflowVersion(), '2.21.0');
});

test('a training worker asked for a GPU backend that is not installed refuses to start, saying how to fix it', () => {
  const out = spawnSync(process.execPath, [path.join(repo, 'dist', 'workers', 'training.js')], {
    env: { ...process.env, NTML_BACKEND: 'gpu', NTML_TEMPORAL_ADDRESS: '127.0.0.1:1' },
    encoding: 'utf8',
    timeout: 60_000,
  });
  assert.equal(out.status, 1);
  assert.match(out.stderr, /@tensorflow\/tfjs-node-gpu/);
  assert.match(out.stderr, /NTML_BACKEND=cpu/);
});

test('an unknown backend name is rejected', () => {
  const out = spawnSync(process.execPath, ['-e', `require(${JSON.stringify(path.join(repo, 'dist', 'core', 'tf.js'))})`], {
    env: { ...process.env, NTML_BACKEND: 'wasm' },
    encoding: 'utf8',
  });
  assert.notEqual(out.status, 0);
  assert.match(out.stderr, /NTML_BACKEND must be "cpu" or "gpu", got "wasm"/);
});
