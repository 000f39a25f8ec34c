/**
 * The store rides out S3 outages: transient failures (connection refused or reset, timeouts,
 * 5xx, throttling) are retried within the outage budget and reported to listeners; permanent
 * ones (4xx) fail at once, naming the object. The classification is checked on error shapes
 * and on real errors from a real client; the retrying on a private versitygw that is
 * SIGKILLed and restarted on the same port and data folder.
 */
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import {
  ArtifactIntegrityError,
  InvalidKeyError,
  S3RequestError,
  StoreConfigError,
  StoreOutageError,
  classifyStoreError,
  createS3Client,
  OutageTracker,
  outagePolicyFromEnv,
  S3ArtifactStore,
  readArtifactUri,
  type OutageState,
} from '../store/index';
import { freePort, isAlive, startS3Server, type S3Server } from '../infra/stack/index';

const quiet = () => undefined;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const httpError = (name: string, status: number) => Object.assign(new Error(`${name} message`), { name, $metadata: { httpStatusCode: status } });
const sysError = (code: string, message = `connect ${code} 127.0.0.1:9`) => Object.assign(new Error(message), { code });

describe('store error classification', () => {
  it('network failures, 5xx and throttling are transient', () => {
    for (const code of ['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'EAI_AGAIN']) {
      assert.equal(classifyStoreError(sysError(code)), 'transient', code);
    }
    assert.equal(classifyStoreError(new Error('socket hang up')), 'transient');
    assert.equal(classifyStoreError(Object.assign(new Error('timed out'), { name: 'TimeoutError' })), 'transient');
    // Node's happy-eyeballs connect reports every refused address in an AggregateError with no message
    assert.equal(classifyStoreError(new AggregateError([sysError('ECONNREFUSED'), sysError('ECONNREFUSED')], '')), 'transient');
    assert.equal(classifyStoreError(new Error('wrapped', { cause: sysError('ECONNRESET') })), 'transient');
    for (const [name, status] of [['InternalError', 500], ['ServiceUnavailable', 503], ['SlowDown', 503], ['Unknown', 502], ['TooManyRequests', 429], ['RequestTimeout', 400]] as const) {
      assert.equal(classifyStoreError(httpError(name, status)), 'transient', `${name} ${status}`);
    }
    assert.equal(classifyStoreError(new StoreOutageError('PutObject', 's3://b/k', 'then', 3, 'ECONNREFUSED', 1)), 'transient');
  });

  it('answers to a bad request and our own checks are permanent', () => {
    for (const [name, status] of [['BadRequest', 400], ['NoSuchBucket', 404], ['AccessDenied', 403], ['InvalidArgument', 400], ['NoSuchKey', 404], ['PreconditionFailed', 412]] as const) {
      assert.equal(classifyStoreError(httpError(name, status)), 'permanent', `${name} ${status}`);
    }
    assert.equal(classifyStoreError(sysError('ENOTFOUND', 'getaddrinfo ENOTFOUND nowhere.invalid')), 'permanent');
    assert.equal(classifyStoreError(new InvalidKeyError('bad key')), 'permanent');
    assert.equal(classifyStoreError(new ArtifactIntegrityError('s3://b/k', { sha256: 'a', bytes: 1 }, { sha256: 'b', bytes: 1 })), 'permanent');
    assert.equal(classifyStoreError(new TypeError('x is not a function')), 'permanent');
    assert.equal(classifyStoreError(undefined), 'permanent');
  });

  it('a real client against a closed port fails transiently', async () => {
    const port = await freePort();
    const client = createS3Client({ endpoint: `http://127.0.0.1:${port}`, credentials: { accessKeyId: 'a', secretAccessKey: 'b' } });
    try {
      const err = await client.send(new GetObjectCommand({ Bucket: 'b', Key: 'k' })).then(
        () => assert.fail('no server listens there'),
        (e: unknown) => e,
      );
      assert.equal(classifyStoreError(err), 'transient', String(err));
    } finally {
      client.destroy();
    }
  });

  it('the outage policy comes from the environment and refuses bad values, naming the variable', () => {
    assert.equal(outagePolicyFromEnv({}).budgetMs, 1_800_000);
    assert.equal(outagePolicyFromEnv({}).maxDelayMs, 30_000);
    assert.equal(outagePolicyFromEnv({ NTML_OUTAGE_BUDGET_SECONDS: '90' }).budgetMs, 90_000);
    assert.equal(outagePolicyFromEnv({ NTML_OUTAGE_BUDGET_SECONDS: '0' }).budgetMs, 0);
    assert.throws(() => outagePolicyFromEnv({ NTML_OUTAGE_BUDGET_SECONDS: 'soon' }), (e: Error) => e instanceof StoreConfigError && /NTML_OUTAGE_BUDGET_SECONDS/.test(e.message));
    assert.throws(() => outagePolicyFromEnv({ NTML_OUTAGE_MAX_BACKOFF_SECONDS: '-1' }), /NTML_OUTAGE_MAX_BACKOFF_SECONDS/);
  });
});

describe('outage tracker', () => {
  const policy = { budgetMs: 5_000, initialDelayMs: 20, maxDelayMs: 80 };

  it('retries transient failures with capped backoff, reports the outage, and clears it on success', async () => {
    const tracker = new OutageTracker('s3://b at test', policy);
    const seen: (OutageState | undefined)[] = [];
    tracker.onOutage((s) => seen.push(s));
    let calls = 0;
    const times: number[] = [];
    const result = await tracker.run('PutObject', 's3://b/k', async () => {
      times.push(Date.now());
      if (++calls <= 5) throw sysError('ECONNREFUSED');
      return 'stored';
    });
    assert.equal(result, 'stored');
    assert.equal(calls, 6);
    assert.deepEqual(seen.map((s) => s?.attempts), [1, 2, 3, 4, 5, undefined]);
    assert.equal(new Set(seen.slice(0, 5).map((s) => s!.since)).size, 1, 'one outage, one start time');
    assert.match(seen[0]!.summary, /^S3 unreachable since \d\d:\d\d:\d\dZ, retrying \(1 attempt failed; last: .*ECONNREFUSED/);
    // backoff doubles from 20 ms (jittered down to at most half) and stops growing at 80 ms
    const gaps = times.slice(1).map((t, i) => t - times[i]);
    assert.ok(gaps.every((g) => g >= 9), `gaps ${gaps}`);
    assert.ok(gaps.slice(3).every((g) => g < 80 + 50), `capped gaps ${gaps}`);
    assert.equal(tracker.current(), undefined);
  });

  it('fails a permanent error at once and an outage longer than the budget with StoreOutageError', async () => {
    const tracker = new OutageTracker('s3://b at test', { ...policy, budgetMs: 300 });
    let calls = 0;
    await assert.rejects(
      tracker.run('PutObject', 's3://b/k', async () => {
        calls++;
        throw httpError('BadRequest', 400);
      }),
      /BadRequest message/,
    );
    assert.equal(calls, 1);
    const t0 = Date.now();
    await assert.rejects(
      tracker.run('GetObject', 's3://b/k', async () => {
        throw sysError('ECONNRESET');
      }),
      (e: Error) => e instanceof StoreOutageError && /GetObject of s3:\/\/b\/k/.test(e.message) && /ECONNRESET/.test(e.message) && e.transient,
    );
    const elapsed = Date.now() - t0;
    assert.ok(elapsed >= 300 && elapsed < 2_000, `gave up after ${elapsed} ms`);
    assert.ok(tracker.current(), 'the outage is still in progress: nothing succeeded');
  });
});

describe('S3 store on a versitygw that is killed and restarted', () => {
  let tmp: string;
  let dataDir: string;
  let port: number;
  let server: S3Server | undefined;
  before(async () => {
    tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'ntml-faults-store-'));
    dataDir = path.join(tmp, 's3');
    port = await freePort();
    server = await startS3Server({ dataDir, port, log: quiet });
  });
  after(async () => {
    await server?.stop();
    await fsp.rm(tmp, { recursive: true, force: true });
  });

  const open = (budgetSeconds: number, extra: { bucket?: string; createBucket?: boolean; secret?: string } = {}) =>
    new S3ArtifactStore(`s3://${extra.bucket ?? 'ntml'}/faults`, {
      endpoint: server!.endpoint,
      credentials: { accessKeyId: server!.accessKeyId, secretAccessKey: extra.secret ?? server!.secretAccessKey },
      createBucket: extra.createBucket ?? true,
      outagePolicy: { budgetMs: budgetSeconds * 1000, initialDelayMs: 100, maxDelayMs: 500 },
    });

  async function killServer(): Promise<void> {
    const pid = server!.pid;
    process.kill(pid, 'SIGKILL');
    for (let i = 0; i < 100 && isAlive(pid); i++) await sleep(50);
    assert.equal(isAlive(pid), false);
  }

  it('a write issued while the server is dead completes once it is back; earlier objects survive', async () => {
    const store = open(60);
    const before = new Uint8Array(randomBytes(50_000));
    const beforeRef = await store.put(before);
    const events: (OutageState | undefined)[] = [];
    store.onOutage((s) => events.push(s));

    await killServer();
    const during = new Uint8Array(randomBytes(80_000));
    const t0 = Date.now();
    const pending = store.put(during);
    const record = store.putRecord('faults/probe', { written: 'during the outage' });
    await sleep(3_000);
    assert.ok(store.outageState(), 'the store reports the outage while the server is down');
    assert.match(store.outageState()!.lastError, /ECONNREFUSED/);
    server = await startS3Server({ dataDir, port, log: quiet }); // same port, same data folder
    const ref = await pending;
    await record;
    const waited = Date.now() - t0;
    assert.ok(waited >= 3_000 && waited < 30_000, `write completed after ${waited} ms`);

    assert.deepEqual(Buffer.from(await store.get(ref)), Buffer.from(during));
    assert.deepEqual(Buffer.from(await store.get(beforeRef)), Buffer.from(before));
    assert.deepEqual(await store.getRecord('faults/probe'), { written: 'during the outage' });
    assert.equal(store.outageState(), undefined);
    const failures = events.filter((e) => e !== undefined);
    assert.ok(failures.length >= 2, `${failures.length} failed attempts reported`);
    assert.equal(new Set(failures.map((e) => e!.since)).size, 1);
    assert.equal(events.at(-1), undefined, 'the last event ends the outage');
  });

  it('gives up after the outage budget with an error naming the object and the budget', async () => {
    const store = open(2);
    await store.putRecord('faults/alive', { ok: true });
    await killServer();
    try {
      const t0 = Date.now();
      await assert.rejects(store.getRecord('faults/alive'), (e: Error) => {
        assert.ok(e instanceof StoreOutageError, String(e));
        assert.match(e.message, /GetObject of s3:\/\/ntml\/faults\/records\/faults\/alive\.json/);
        assert.match(e.message, /outage budget 2 s, NTML_OUTAGE_BUDGET_SECONDS/);
        return true;
      });
      const elapsed = Date.now() - t0;
      assert.ok(elapsed >= 2_000 && elapsed < 10_000, `gave up after ${elapsed} ms`);
    } finally {
      server = await startS3Server({ dataDir, port, log: quiet });
    }
  });

  it('reading a user-given s3:// input waits out an outage too, and names the URI of a refused read', async () => {
    const store = open(60);
    const bytes = new Uint8Array(randomBytes(30_000));
    const ref = await store.put(bytes);
    const s3 = { endpoint: server!.endpoint, credentials: { accessKeyId: server!.accessKeyId, secretAccessKey: server!.secretAccessKey } };
    const outagePolicy = { budgetMs: 60_000, initialDelayMs: 100, maxDelayMs: 500 };
    await killServer();
    const pending = readArtifactUri(ref.uri, { s3, outagePolicy });
    await sleep(2_000);
    server = await startS3Server({ dataDir, port, log: quiet });
    const read = await pending;
    assert.equal(read.sha256, ref.sha256);

    const forbidden = { ...s3, credentials: { ...s3.credentials, secretAccessKey: 'not-the-secret' } };
    await assert.rejects(readArtifactUri(ref.uri, { s3: forbidden, outagePolicy }), (e: Error) => {
      assert.ok(e instanceof S3RequestError, String(e));
      assert.equal(e.status, 403);
      assert.ok(e.message.includes(ref.uri), e.message);
      return true;
    });
  });

  it('a request the server refuses (4xx) fails at once, naming the object, however long the budget', async () => {
    const missingBucket = open(600, { bucket: 'no-such-bucket', createBucket: false });
    let t0 = Date.now();
    await assert.rejects(missingBucket.getRecord('faults/x'), (e: Error) => {
      assert.ok(e instanceof S3RequestError, String(e));
      assert.equal(e.code, 'NoSuchBucket');
      assert.match(e.message, /GetObject of s3:\/\/no-such-bucket\/faults\/records\/faults\/x\.json/);
      return true;
    });
    assert.ok(Date.now() - t0 < 5_000, `took ${Date.now() - t0} ms`);

    const wrongSecret = open(600, { createBucket: false, secret: 'not-the-secret' });
    t0 = Date.now();
    await assert.rejects(wrongSecret.put(new Uint8Array([1, 2, 3])), (e: Error) => {
      assert.ok(e instanceof S3RequestError, String(e));
      assert.equal(e.status, 403);
      assert.match(e.message, /s3:\/\/ntml\/faults\/cas\//);
      return true;
    });
    assert.ok(Date.now() - t0 < 5_000, `took ${Date.now() - t0} ms`);
  });
});
