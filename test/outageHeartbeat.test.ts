/**
 * A store outage shows in the activity's heartbeats: while S3 is unreachable the details keep
 * the last checkpoint (a retried attempt resumes from it) and gain `storeOutage`; once the store
 * answers again `storeOutage` is gone and the checkpoint is still there. The store is the real
 * S3 store talking to the test stack's versitygw through a TCP relay that stops listening
 * while "down", in Temporal's activity test environment.
 */
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as net from 'node:net';
import { MockActivityEnvironment } from '@temporalio/testing';
import { activity } from '../activities/stageActivity';
import { lastHeartbeatDetails, useArtifactStore } from '../activities/context';
import { withStoreOutage, type StoreOutageDetails } from '../activities/checkpointing';
import { OutageTracker, S3ArtifactStore, s3OptionsFromEnv, type ArtifactRef, type OutageState } from '../store/index';

/**
 * Relays TCP to `target` while up; while down it does not listen (connections are refused:
 * ECONNREFUSED, a transient failure) and the open connections are closed. (Resetting sockets
 * with resetAndDestroy instead left the test process unable to exit, in node's handle cleanup.)
 */
async function relay(target: URL): Promise<{ port: number; down(): void; up(): Promise<void>; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const track = (s: net.Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  };
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(target.port), target.hostname);
    track(client);
    track(upstream);
    client.pipe(upstream).pipe(client);
    const drop = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', drop);
    upstream.on('error', drop);
  });
  const listen = (port: number) => new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  await listen(0);
  const port = (server.address() as net.AddressInfo).port;
  const closeAll = () => {
    for (const s of sockets) s.destroy();
    return new Promise<void>((resolve) => (server.listening ? server.close(() => resolve()) : resolve()));
  };
  return {
    port,
    down: () => void closeAll(),
    up: () => (server.listening ? Promise.resolve() : listen(port)),
    close: closeAll,
  };
}

const outage: OutageState = {
  store: 's3://b at http://127.0.0.1:9',
  since: '2026-01-01T12:03:07.000Z',
  attempts: 7,
  lastError: 'ECONNREFUSED: connect ECONNREFUSED 127.0.0.1:9',
  lastErrorAt: '2026-01-01T12:04:00.000Z',
  summary: 'S3 unreachable since 12:03:07Z, retrying (7 attempts failed; last: ECONNREFUSED: connect ECONNREFUSED 127.0.0.1:9)',
};

test('withStoreOutage merges an outage into the details and removes it on recovery', () => {
  const checkpoint = { uri: 'ntml://sha256/ab', sha256: 'ab', bytes: 3 };
  const details = { stage: 'teacher', epoch: 3, epochs: 8, checkpoint };
  const during = withStoreOutage(details, outage) as Record<string, unknown>;
  assert.deepEqual(during.checkpoint, checkpoint);
  assert.equal(during.epoch, 3);
  assert.deepEqual(during.storeOutage, { since: outage.since, attempts: 7, lastError: outage.lastError, summary: outage.summary });
  assert.deepEqual(withStoreOutage(during, undefined), details);
  // an activity with no details yet: the outage alone, then no details again
  assert.deepEqual(withStoreOutage(undefined, outage), { storeOutage: (during as { storeOutage: StoreOutageDetails }).storeOutage });
  assert.equal(withStoreOutage(withStoreOutage(undefined, outage), undefined), undefined);
  assert.equal(withStoreOutage(undefined, undefined), undefined);
});

test('an answer that is an error (a 404) still ends the outage: the server is reachable again', async () => {
  const tracker = new OutageTracker('test', { budgetMs: 10_000, initialDelayMs: 1, maxDelayMs: 1 });
  const seen: Array<OutageState | undefined> = [];
  tracker.onOutage((s) => seen.push(s));
  let calls = 0;
  const notFound = Object.assign(new Error('NoSuchKey'), { name: 'NoSuchKey', $metadata: { httpStatusCode: 404 } });
  const op = async () => {
    calls += 1;
    if (calls === 1) throw Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:9'), { code: 'ECONNREFUSED' });
    throw notFound;
  };
  await assert.rejects(tracker.run('get', 'x', op), (err) => err === notFound);
  assert.equal(tracker.current(), undefined);
  assert.equal(seen.length, 2);
  assert.equal(seen[0]?.attempts, 1);
  assert.equal(seen[1], undefined);
});

test('an activity heartbeats the store outage merged with its checkpoint, and clears it when S3 answers again', { timeout: 120_000 }, async () => {
  const opts = s3OptionsFromEnv();
  assert.ok(opts.endpoint, 'the test stack sets NTML_S3_ENDPOINT');
  const proxy = await relay(new URL(opts.endpoint));
  const store = new S3ArtifactStore(process.env.NTML_STORE?.startsWith('s3://') ? process.env.NTML_STORE : 's3://ntml-outage-test', {
    ...opts,
    endpoint: `http://127.0.0.1:${proxy.port}`,
    outagePolicy: { budgetMs: 60_000, initialDelayMs: 50, maxDelayMs: 200 },
  });
  useArtifactStore(store);
  const checkpoint: ArtifactRef = await store.put(Buffer.from('a checkpoint, as far as this test cares'));
  const beats: unknown[] = [];
  const env = new MockActivityEnvironment();
  env.on('heartbeat', (d: unknown) => beats.push(d));
  try {
    const final = await env.run(() =>
      activity(async (host) => {
        host.progress({ stage: 'teacher', epoch: 3, epochs: 8, checkpoint });
        proxy.down();
        setTimeout(() => void proxy.up(), 1_500);
        // rides out the outage inside the store (retried ECONNRESETs), then answers
        assert.equal(Buffer.from(await store.get(checkpoint)).toString(), 'a checkpoint, as far as this test cares');
        return lastHeartbeatDetails();
      }),
    );
    const during = beats.filter((b) => (b as { storeOutage?: unknown } | undefined)?.storeOutage) as Array<{ checkpoint: ArtifactRef; epoch: number; storeOutage: StoreOutageDetails }>;
    assert.ok(during.length >= 1, `some heartbeat carried storeOutage (got ${JSON.stringify(beats)})`);
    for (const b of during) {
      assert.deepEqual(b.checkpoint, checkpoint, 'an outage beat keeps the checkpoint');
      assert.equal(b.epoch, 3);
      assert.ok(b.storeOutage.attempts >= 1);
      assert.match(b.storeOutage.summary, /^S3 unreachable since \d\d:\d\d:\d\dZ, retrying \(\d+ attempts? failed; last: /);
      assert.ok(!Number.isNaN(Date.parse(b.storeOutage.since)));
    }
    assert.deepEqual(final, { stage: 'teacher', epoch: 3, epochs: 8, checkpoint }, 'recovery clears storeOutage and keeps the rest');
    assert.deepEqual(beats.at(-1), final, 'the last beat sent is the cleared one');
  } finally {
    store.client.destroy(); // its pooled connections would keep the test process alive
    await proxy.close();
  }
});
