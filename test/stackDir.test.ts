/**
 * A local stack that outlives a checkout: `ntml stack start --stack-dir DIR` (or NTML_STACK_DIR)
 * keeps the servers' state, and so the store, in a folder outside the checkout; stopped and
 * started again from another working directory, the stack still holds what was stored, and the
 * store commands find it through the same setting.
 */
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';
import { openStore, readCredentialsFile } from '../store/index';
import { stackDirFromEnv, DEFAULT_STACK_DIR } from '../infra/stack/index';
import { runNtml } from './support/processes';


/** The environment without the test run's own stack, so the commands look for a local one. */
function bareEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, ...extra };
  for (const k of Object.keys(env)) if (/^NTML_(STORE|S3_|TEMPORAL_ADDRESS|STACK_DIR)/.test(k) && !(k in extra)) delete env[k];
  return env;
}

const ntml = (args: string[], opts: { cwd: string; env: NodeJS.ProcessEnv }) => runNtml(args, { ...opts, timeout: 120_000 });

function exportsOf(stdout: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const m of stdout.matchAll(/^export (\w+)=(.*)$/gm)) env[m[1]] = m[2].replace(/^'(.*)'$/, '$1');
  return env;
}

function storeOf(env: Record<string, string>) {
  return openStore(env.NTML_STORE, { s3: { endpoint: env.NTML_S3_ENDPOINT, credentials: readCredentialsFile(env.NTML_S3_CREDENTIALS_FILE) } });
}

describe('the stack directory setting', () => {
  it('NTML_STACK_DIR is read in one place, made absolute; unset means .ntml/stack', () => {
    assert.equal(stackDirFromEnv({}), DEFAULT_STACK_DIR);
    assert.equal(stackDirFromEnv({ NTML_STACK_DIR: '  ' }), DEFAULT_STACK_DIR);
    assert.equal(stackDirFromEnv({ NTML_STACK_DIR: 'rel/stack' }), path.resolve('rel/stack'));
    assert.equal(stackDirFromEnv({ NTML_STACK_DIR: '/srv/ntml/stack' }), '/srv/ntml/stack');
  });

  const outside = fsp.mkdtemp(path.join(os.tmpdir(), 'ntml-stackdir-'));
  after(async () => {
    const root = await outside;
    await ntml(['stack', 'stop', '--stack-dir', path.join(root, 'stack')], { cwd: root, env: bareEnv() });
    await fsp.rm(root, { recursive: true, force: true });
  });

  it('a stack outside the checkout keeps its store across a stop and a start from elsewhere', { timeout: 300_000 }, async () => {
    const root = await outside;
    const dir = path.join(root, 'stack');
    const firstCwd = await fsp.mkdtemp(path.join(root, 'checkout-a-'));
    const secondCwd = await fsp.mkdtemp(path.join(root, 'checkout-b-'));

    const started = await ntml(['stack', 'start', '--stack-dir', dir], { cwd: firstCwd, env: bareEnv() });
    assert.equal(started.code, 0, started.stderr);
    assert.ok(existsSync(path.join(dir, 'stack.json')), 'the stack records itself in --stack-dir');
    assert.ok(!existsSync(path.join(firstCwd, '.ntml')), 'nothing is written under the working directory');
    const env1 = exportsOf(started.stdout);
    const store1 = storeOf(env1);
    const payload = new Uint8Array(randomBytes(2048));
    const ref = await store1.put(payload);
    await store1.putRecord('kept/across-restarts', { ref });

    // the environment variable alone names the same stack
    const status = await ntml(['stack', 'status'], { cwd: secondCwd, env: bareEnv({ NTML_STACK_DIR: dir }) });
    assert.equal(status.code, 0, status.stdout + status.stderr);
    assert.match(status.stdout, /running, healthy/);
    const stopped = await ntml(['stack', 'stop'], { cwd: secondCwd, env: bareEnv({ NTML_STACK_DIR: dir }) });
    assert.equal(stopped.code, 0, stopped.stderr);
    assert.match(stopped.stdout, /stopped/);

    const restarted = await ntml(['stack', 'start'], { cwd: secondCwd, env: bareEnv({ NTML_STACK_DIR: dir }) });
    assert.equal(restarted.code, 0, restarted.stderr);
    const store2 = storeOf(exportsOf(restarted.stdout));
    assert.deepEqual(await store2.getRecord('kept/across-restarts'), { ref });
    assert.deepEqual(Buffer.from(await store2.get(ref)), Buffer.from(payload));

    // a store command finds the stack's store through --stack-dir: the bundle round trip
    await store2.putRecord('sweeps/kept/spec', { spec: { name: 'kept' }, cellIds: [] });
    const bundle = path.join(root, 'kept.ntmlb');
    const exported = await ntml(['store', 'export', '--sweep', 'kept', '--out', bundle, '--stack-dir', dir], { cwd: secondCwd, env: bareEnv() });
    assert.equal(exported.code, 0, exported.stderr);
    assert.match(exported.stdout, /wrote .*kept\.ntmlb: 1 records/);
    const imported = await ntml(['store', 'import', bundle, '--stack-dir', dir], { cwd: firstCwd, env: bareEnv() });
    assert.equal(imported.code, 0, imported.stderr);
    assert.match(imported.stdout, /records 0 written, 1 already there/);

    const finalStop = await ntml(['stack', 'stop', '--stack-dir', dir], { cwd: firstCwd, env: bareEnv() });
    assert.equal(finalStop.code, 0, finalStop.stderr);
  });
});
