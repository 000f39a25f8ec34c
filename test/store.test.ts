/**
 * One contract suite for both artifact stores, against real backends: the filesystem store in a
 * temporary directory, and S3 on a real versitygw. The S3 server is the one named by
 * NTML_S3_ENDPOINT + NTML_S3_CREDENTIALS_FILE when both are set (a unique prefix is used), otherwise
 * the test starts its own with infra/stack's startS3Server on a temporary data directory.
 */
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { DeleteObjectCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import {
  ArtifactIntegrityError,
  ArtifactNotFoundError,
  FileArtifactStore,
  InvalidKeyError,
  S3ArtifactStore,
  StoreConfigError,
  openStore,
  parseArtifactUri,
  readArtifactUri,
  readCredentialsFile,
  s3OptionsFromEnv,
  storeFromEnv,
  type ArtifactRef,
  type ArtifactStore,
  type S3Options,
} from '../store/index';
import { startS3Server, type S3Server } from '../infra/stack/s3';

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const rand = (n: number) => new Uint8Array(randomBytes(n));

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

type FaultResult = { ok: boolean; error: string };

interface Backend {
  store: ArtifactStore;
  /** Overwrites the stored object behind the store's back. */
  corrupt(ref: ArtifactRef, bytes: Uint8Array): Promise<void>;
  /** A put whose write fails midway (the store's own code path, a real failure underneath). */
  putUnderFault(data: Uint8Array): Promise<FaultResult>;
  putRecordUnderFault(key: string, value: unknown): Promise<FaultResult>;
  /** What the injected failure looks like, so the test knows the write failed for the intended reason. */
  faultPattern: RegExp;
  cleanup(): Promise<void>;
}

function contractSuite(name: string, setup: () => Promise<Backend>, extra?: (backend: () => Backend) => void): void {
  describe(`ArtifactStore contract: ${name}`, () => {
    let b: Backend;
    let store: ArtifactStore;
    before(async () => {
      b = await setup();
      store = b.store;
    });
    after(async () => {
      await b?.cleanup();
    });

    it('round-trips bytes and returns a content-addressed ref', async () => {
      for (const data of [rand(100_000), new Uint8Array(0), new TextEncoder().encode('hello')]) {
        const ref = await store.put(data);
        assert.equal(ref.sha256, sha(data));
        assert.equal(ref.bytes, data.byteLength);
        assert.ok(ref.uri.startsWith(`${store.location}/cas/${ref.sha256.slice(0, 2)}/${ref.sha256}`), ref.uri);
        assert.deepEqual(Buffer.from(await store.get(ref)), Buffer.from(data));
        assert.equal(await store.has(ref), true);
        assert.equal(await store.has(ref.sha256), true);
        assert.equal(await store.verify(ref), true);
      }
    });

    it('put is idempotent', async () => {
      const data = rand(5000);
      const r1 = await store.put(data);
      const r2 = await store.put(data);
      assert.deepEqual(r2, r1);
      const listed = (await collect(store.list())).filter((o) => o.sha256 === r1.sha256);
      assert.deepEqual(listed, [{ sha256: r1.sha256, bytes: 5000 }]);
    });

    it('verifies sha256 and size on read, and a later good put repairs a corrupt object', async () => {
      const data = rand(20_000);
      const ref = await store.put(data);

      // Same size, different bytes.
      const flipped = Uint8Array.from(data);
      flipped[123] ^= 0xff;
      await b.corrupt(ref, flipped);
      await assert.rejects(store.get(ref), (err: unknown) => {
        assert.ok(err instanceof ArtifactIntegrityError, String(err));
        assert.match(err.message, new RegExp(ref.sha256));
        assert.match(err.message, new RegExp(sha(flipped)));
        assert.ok(err.message.includes(ref.uri), err.message);
        assert.deepEqual(err.actual, { sha256: sha(flipped), bytes: 20_000 });
        return true;
      });
      assert.equal(await store.verify(ref), false);
      assert.equal(await store.has(ref), true, 'has() only checks existence');

      // Truncated.
      await b.corrupt(ref, data.subarray(0, 1000));
      await assert.rejects(store.get(ref), (err: unknown) => {
        assert.ok(err instanceof ArtifactIntegrityError);
        assert.match(err.message, /20000 bytes/);
        assert.match(err.message, /1000 bytes/);
        return true;
      });

      // put() of the good bytes replaces the corrupt object.
      assert.deepEqual(await store.put(data), ref);
      assert.deepEqual(Buffer.from(await store.get(ref)), Buffer.from(data));
      assert.equal(await store.verify(ref), true);

      // A ref whose size disagrees with the stored (good) object is rejected too.
      await assert.rejects(store.get({ ...ref, bytes: ref.bytes + 1 }), ArtifactIntegrityError);
    });

    it('missing objects: ArtifactNotFoundError, has/verify false, delete is a no-op', async () => {
      const data = rand(64);
      const s = sha(data);
      const ref: ArtifactRef = { uri: `${store.location}/cas/${s.slice(0, 2)}/${s}`, sha256: s, bytes: 64 };
      await assert.rejects(store.get(ref), (err: unknown) => {
        assert.ok(err instanceof ArtifactNotFoundError, String(err));
        assert.ok(err.message.includes(s));
        return true;
      });
      assert.equal(await store.has(ref), false);
      assert.equal(await store.has(s), false);
      assert.equal(await store.verify(ref), false);
      await store.delete(s);
    });

    it('validates sha256 arguments', async () => {
      for (const bad of ['ABC', '../../etc/passwd', 'A'.repeat(64), `${'a'.repeat(63)}/`, '']) {
        await assert.rejects(store.get({ uri: 'x', sha256: bad, bytes: 1 }), InvalidKeyError);
        await assert.rejects(store.has(bad), InvalidKeyError);
        await assert.rejects(store.delete(bad), InvalidKeyError);
      }
    });

    it('list() sees stored objects; delete() removes them', async () => {
      const refs = await Promise.all([rand(10), rand(2000), rand(30_000)].map((d) => store.put(d)));
      const listed = new Map((await collect(store.list())).map((o) => [o.sha256, o.bytes]));
      for (const r of refs) assert.equal(listed.get(r.sha256), r.bytes);
      await store.delete(refs[0].sha256);
      assert.equal(await store.has(refs[0]), false);
      const after = new Set((await collect(store.list())).map((o) => o.sha256));
      assert.equal(after.has(refs[0].sha256), false);
      assert.equal(after.has(refs[1].sha256), true);
    });

    it('concurrent puts of the same bytes are safe', async () => {
      const data = rand(300_000);
      const refs = await Promise.all(Array.from({ length: 12 }, () => store.put(data)));
      for (const r of refs) assert.deepEqual(r, refs[0]);
      assert.deepEqual(Buffer.from(await store.get(refs[0])), Buffer.from(data));
      const listed = (await collect(store.list())).filter((o) => o.sha256 === refs[0].sha256);
      assert.equal(listed.length, 1);
    });

    it('records: put/get/list/delete, atomic replace', async () => {
      assert.equal(await store.getRecord('runs/none'), undefined);
      await store.putRecord('runs/r1', { status: 'running', n: 1 });
      await store.putRecord('runs/r1', { status: 'done', n: 2 });
      await store.putRecord('runs/r2', [1, 2, 3]);
      await store.putRecord('runs/sub/r3', 'text');
      await store.putRecord('cache/index', { a: null });
      await store.putRecord('runsx', 0);
      assert.deepEqual(await store.getRecord('runs/r1'), { status: 'done', n: 2 });
      assert.deepEqual(await store.getRecord<number[]>('runs/r2'), [1, 2, 3]);
      assert.equal(await store.getRecord('runs/sub/r3'), 'text');
      assert.equal(await store.getRecord('runsx'), 0);
      assert.deepEqual(await store.listRecords('runs/'), ['runs/r1', 'runs/r2', 'runs/sub/r3']);
      assert.deepEqual(await store.listRecords('runs'), ['runs/r1', 'runs/r2', 'runs/sub/r3', 'runsx']);
      assert.deepEqual(await store.listRecords('runs/r'), ['runs/r1', 'runs/r2']);
      assert.deepEqual(await store.listRecords('nothing/'), []);
      const all = await store.listRecords('');
      for (const k of ['cache/index', 'runs/r1', 'runs/r2', 'runs/sub/r3', 'runsx']) assert.ok(all.includes(k), k);
      await store.deleteRecord('runs/r2');
      await store.deleteRecord('runs/r2'); // already gone: no error
      assert.equal(await store.getRecord('runs/r2'), undefined);
      assert.deepEqual(await store.listRecords('runs/'), ['runs/r1', 'runs/sub/r3']);
      await assert.rejects(store.putRecord('runs/u', undefined), /not JSON-serialisable/);
    });

    it('rejects bad record keys with an error naming the key', async () => {
      const bad = ['../x', '/abs', 'a\\b', '', 'a/../b', 'a//b', 'a/', './a', '.hidden', 'a\u0000b', 'a\nb', 'sp ace', 'ü', 'a:b', 'x'.repeat(600)];
      for (const key of bad) {
        for (const op of [
          () => store.putRecord(key, 1),
          () => store.getRecord(key),
          () => store.deleteRecord(key),
        ]) {
          await assert.rejects(op(), (err: unknown) => {
            assert.ok(err instanceof InvalidKeyError, `${JSON.stringify(key)}: ${String(err)}`);
            assert.ok(err.message.includes(JSON.stringify(key)), err.message);
            return true;
          });
        }
      }
      for (const prefix of ['../', '/abs', 'a\\', 'a//']) await assert.rejects(store.listRecords(prefix), InvalidKeyError);
      // Valid edge cases.
      await store.putRecord('A-z_0.9/x.y', true);
      assert.equal(await store.getRecord('A-z_0.9/x.y'), true);
    });

    it('a failed write leaves the previous good object and record intact', async () => {
      const good = rand(256 * 1024);
      const goodRef = await store.put(good);
      await store.putRecord('fault/r', { v: 1 });

      // 1. A new object whose write fails midway does not appear.
      const fresh = rand(256 * 1024);
      const r1 = await b.putUnderFault(fresh);
      assert.equal(r1.ok, false, 'the faulty put must fail');
      assert.match(r1.error, b.faultPattern);
      const freshSha = sha(fresh);
      assert.equal(await store.has(freshSha), false);
      await assert.rejects(store.get({ uri: '', sha256: freshSha, bytes: fresh.byteLength }), ArtifactNotFoundError);
      assert.equal((await collect(store.list())).some((o) => o.sha256 === freshSha), false);

      // 2. Re-putting an existing good object under the same fault never damages it.
      await b.putUnderFault(good);
      assert.equal(await store.verify(goodRef), true);
      assert.deepEqual(Buffer.from(await store.get(goodRef)), Buffer.from(good));

      // 3. A record replacement that fails midway keeps the old value.
      const r3 = await b.putRecordUnderFault('fault/r', { v: 2, pad: 'x'.repeat(256 * 1024) });
      assert.equal(r3.ok, false, 'the faulty record write must fail');
      assert.match(r3.error, b.faultPattern);
      assert.deepEqual(await store.getRecord('fault/r'), { v: 1 });
      assert.deepEqual(await store.listRecords('fault/'), ['fault/r']);

      // 4. Without the fault everything works again.
      const freshRef = await store.put(fresh);
      assert.equal(await store.verify(freshRef), true);
      await store.putRecord('fault/r', { v: 3 });
      assert.deepEqual(await store.getRecord('fault/r'), { v: 3 });
    });

    extra?.(() => b);
  });
}

// ---------------------------------------------------------------- filesystem backend

const DIST_STORE = path.join(__dirname, '..', 'store', 'index.js');

/**
 * Runs one store operation in a child process limited by `ulimit -f` (RLIMIT_FSIZE), so the write
 * really fails part-way (EFBIG or SIGXFSZ), as on a full disk. This works as root too, unlike a
 * read-only directory.
 */
function runLimitedChild(root: string, op: 'put' | 'putRecord', inputFile: string, key = ''): Promise<FaultResult> {
  const script = `
    const fs = require('fs');
    const { openStore } = require(process.env.T_STORE_MODULE);
    const store = openStore(process.env.T_ROOT);
    const data = fs.readFileSync(process.env.T_INPUT);
    const p = process.env.T_OP === 'put'
      ? store.put(new Uint8Array(data))
      : store.putRecord(process.env.T_KEY, JSON.parse(data.toString('utf8')));
    p.then(() => process.exit(0), (e) => { process.stderr.write(String(e && (e.code || e.message))); process.exit(3); });
  `;
  return new Promise((resolve) => {
    execFile(
      '/bin/sh',
      ['-c', 'ulimit -f 16 && exec "$0" -e "$1"', process.execPath, script],
      { env: { ...process.env, T_STORE_MODULE: DIST_STORE, T_ROOT: root, T_INPUT: inputFile, T_OP: op, T_KEY: key } },
      (err, _stdout, stderr) => {
        if (!err) resolve({ ok: true, error: '' });
        else resolve({ ok: false, error: `${(err as { signal?: string }).signal ?? ''} ${stderr}`.trim() });
      },
    );
  });
}

contractSuite('filesystem', async () => {
  const tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'ntml-store-fs-'));
  const root = path.join(tmp, 'store');
  const store = openStore(pathToFileURL(root).href) as FileArtifactStore;
  assert.ok(store instanceof FileArtifactStore);
  assert.equal(store.location, pathToFileURL(root).href);
  let n = 0;
  const inputFile = async (bytes: Uint8Array | string) => {
    const f = path.join(tmp, `input-${n++}`);
    await fsp.writeFile(f, bytes);
    return f;
  };
  return {
    store,
    async corrupt(ref, bytes) {
      await fsp.writeFile(fileURLToPath(ref.uri), bytes);
    },
    async putUnderFault(data) {
      return runLimitedChild(root, 'put', await inputFile(data));
    },
    async putRecordUnderFault(key, value) {
      return runLimitedChild(root, 'putRecord', await inputFile(JSON.stringify(value)), key);
    },
    faultPattern: /EFBIG|SIGXFSZ/,
    async cleanup() {
      await fsp.rm(tmp, { recursive: true, force: true });
    },
  };
});

// ---------------------------------------------------------------- S3 backend (real versitygw)

/**
 * Damages uploads in transit: the request keeps the ChecksumSHA256 of the real bytes but carries
 * different bytes, so the server must refuse it (BadDigest).
 */
async function withCorruptedUploads<T>(store: S3ArtifactStore, fn: () => Promise<T>): Promise<T> {
  const name = 'ntmlTestCorruptUploads';
  store.client.middlewareStack.add(
    (next) => async (args) => {
      const req = args.request as { method?: string; body?: unknown };
      if (req.method === 'PUT' && req.body instanceof Uint8Array && req.body.byteLength > 0) {
        const body = Uint8Array.from(req.body);
        body[body.byteLength >> 1] ^= 0xff;
        req.body = body;
      }
      return next(args);
    },
    { step: 'build', name, priority: 'low' },
  );
  try {
    return await fn();
  } finally {
    store.client.middlewareStack.remove(name);
  }
}

async function settle(p: Promise<unknown>): Promise<FaultResult> {
  try {
    await p;
    return { ok: true, error: '' };
  } catch (err) {
    return { ok: false, error: String(err) };
  }
}

const s3Shared: { server?: S3Server; options?: S3Options; location?: string; cleanupPrefix?: { bucket: string; prefix: string } } = {};

contractSuite(
  's3 (versitygw)',
  async () => {
  const unique = `${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`;
  let tmp: string | undefined;
  if (process.env.NTML_S3_ENDPOINT && process.env.NTML_S3_CREDENTIALS_FILE) {
    s3Shared.options = s3OptionsFromEnv(process.env);
    const envBucket = process.env.NTML_STORE?.startsWith('s3://') ? process.env.NTML_STORE.slice(5).split('/')[0] : 'ntml-test';
    s3Shared.location = `s3://${envBucket}/test-${unique}`;
    s3Shared.cleanupPrefix = { bucket: envBucket, prefix: `test-${unique}/` };
  } else {
    tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'ntml-store-s3-'));
    s3Shared.server = await startS3Server({ dataDir: tmp, log: () => undefined });
    s3Shared.options = { endpoint: s3Shared.server.endpoint, credentials: readCredentialsFile(s3Shared.server.credentialsFile) };
    // A bucket that does not exist yet: the store creates it on first use.
    s3Shared.location = `s3://ntml-t-${unique}/prefix/p2`;
  }
  const store = openStore(s3Shared.location, { s3: s3Shared.options }) as S3ArtifactStore;
  assert.ok(store instanceof S3ArtifactStore);
  assert.equal(store.location, s3Shared.location);
  return {
    store,
    async corrupt(ref, bytes) {
      const u = parseArtifactUri(ref.uri);
      assert.equal(u.scheme, 's3');
      if (u.scheme !== 's3') return;
      // A plain overwrite through the S3 API, bypassing the store's checks.
      await store.client.send(new PutObjectCommand({ Bucket: u.bucket, Key: u.key, Body: bytes }));
    },
    putUnderFault: (data) => withCorruptedUploads(store, () => settle(store.put(data))),
    putRecordUnderFault: (key, value) => withCorruptedUploads(store, () => settle(store.putRecord(key, value))),
    faultPattern: /BadDigest|did not match/,
    async cleanup() {
      if (s3Shared.cleanupPrefix) {
        const { bucket, prefix } = s3Shared.cleanupPrefix;
        let token: string | undefined;
        do {
          const out = await store.client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }));
          for (const o of out.Contents ?? []) await store.client.send(new DeleteObjectCommand({ Bucket: bucket, Key: o.Key! }));
          token = out.IsTruncated ? out.NextContinuationToken : undefined;
        } while (token);
      }
      store.client.destroy();
      await s3Shared.server?.stop();
      if (tmp) await fsp.rm(tmp, { recursive: true, force: true });
    },
  };
  },
  (backend) => {
    it('readArtifactUri reads a plain s3:// object and computes its sha256', async () => {
      const store = backend().store as S3ArtifactStore;
      const data = rand(4096);
      const key = `${store.prefix}plain/deployed-model.bin`;
      await store.client.send(new PutObjectCommand({ Bucket: store.bucket, Key: key, Body: data }));
      const got = await readArtifactUri(`s3://${store.bucket}/${key}`, { s3: s3Shared.options });
      assert.equal(got.sha256, sha(data));
      assert.equal(got.bytes, 4096);
      assert.deepEqual(Buffer.from(got.data), Buffer.from(data));
      await assert.rejects(readArtifactUri(`s3://${store.bucket}/${store.prefix}plain/missing`, { s3: s3Shared.options }), ArtifactNotFoundError);
      await store.client.send(new DeleteObjectCommand({ Bucket: store.bucket, Key: key }));
    });

    it('a store with wrong credentials fails with StoreConfigError', async () => {
      const good = s3Shared.options!;
      const bad = openStore(s3Shared.location!, {
        s3: { ...good, credentials: { accessKeyId: good.credentials!.accessKeyId, secretAccessKey: 'wrong-secret' } },
      });
      await assert.rejects(bad.put(rand(10)), StoreConfigError);
    });
  },
);

// ---------------------------------------------------------------- configuration and plain URIs

describe('store configuration and plain URIs', () => {
  it('openStore accepts s3://, file:// and directory paths, and rejects other schemes', () => {
    const s3 = openStore('s3://my-bucket/a/b/', { s3: { endpoint: 'http://127.0.0.1:1' } }) as S3ArtifactStore;
    assert.equal(s3.location, 's3://my-bucket/a/b');
    assert.equal(s3.prefix, 'a/b/');
    assert.equal((openStore('s3://my-bucket') as S3ArtifactStore).prefix, '');
    const fsStore = openStore('relative/dir');
    assert.equal(fsStore.location, pathToFileURL(path.resolve('relative/dir')).href);
    assert.throws(() => openStore('http://example.com/x'), StoreConfigError);
    assert.throws(() => openStore('s3://Bad_Bucket/x'), StoreConfigError);
    assert.throws(() => openStore(''), StoreConfigError);
  });

  it('storeFromEnv: default local folder, NTML_STORE, credentials file', async () => {
    const def = storeFromEnv({});
    assert.ok(def instanceof FileArtifactStore);
    assert.match(def.location, /\/\.ntml\/store$/);

    const tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'ntml-store-env-'));
    try {
      assert.equal(storeFromEnv({ NTML_STORE: pathToFileURL(tmp).href }).location, pathToFileURL(tmp).href);
      const credFile = path.join(tmp, 'creds.json');
      await fsp.writeFile(credFile, JSON.stringify({ accessKeyId: 'AK', secretAccessKey: 'SK' }));
      const opts = s3OptionsFromEnv({ NTML_S3_ENDPOINT: 'http://127.0.0.1:9', NTML_S3_CREDENTIALS_FILE: credFile });
      assert.deepEqual(opts, { region: 'us-east-1', endpoint: 'http://127.0.0.1:9', credentials: { accessKeyId: 'AK', secretAccessKey: 'SK' } });
      const fromAws = s3OptionsFromEnv({ AWS_ACCESS_KEY_ID: 'A', AWS_SECRET_ACCESS_KEY: 'B', NTML_S3_REGION: 'eu-west-1' });
      assert.deepEqual(fromAws, { region: 'eu-west-1', credentials: { accessKeyId: 'A', secretAccessKey: 'B' } });
      const s3 = storeFromEnv({ NTML_STORE: 's3://bkt/pre', NTML_S3_ENDPOINT: 'http://127.0.0.1:9', NTML_S3_CREDENTIALS_FILE: credFile });
      assert.ok(s3 instanceof S3ArtifactStore);
      assert.equal(s3.location, 's3://bkt/pre');
      await fsp.writeFile(credFile, '{"accessKeyId": 1}');
      assert.throws(() => s3OptionsFromEnv({ NTML_S3_CREDENTIALS_FILE: credFile }), StoreConfigError);
      assert.throws(() => s3OptionsFromEnv({ NTML_S3_CREDENTIALS_FILE: path.join(tmp, 'missing.json') }), StoreConfigError);
      assert.throws(() => s3OptionsFromEnv({ NTML_S3_ENDPOINT: 'not a url' }), StoreConfigError);
    } finally {
      await fsp.rm(tmp, { recursive: true, force: true });
    }
  });

  it('parseArtifactUri', () => {
    assert.deepEqual(parseArtifactUri('s3://b/k/x.bin'), { scheme: 's3', bucket: 'b', key: 'k/x.bin' });
    assert.deepEqual(parseArtifactUri('file:///tmp/a%20b'), { scheme: 'file', path: '/tmp/a b' });
    for (const bad of ['s3://b', 's3://b/', 's3://b/dir/', 'http://x/y', 'relative/path', '']) {
      assert.throws(() => parseArtifactUri(bad), StoreConfigError, bad);
    }
  });

  it('readArtifactUri reads plain file:// objects and computes their sha256', async () => {
    const tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'ntml-store-uri-'));
    try {
      const data = rand(4096);
      const file = path.join(tmp, 'model.bin');
      await fsp.writeFile(file, data);
      const got = await readArtifactUri(pathToFileURL(file).href);
      assert.equal(got.sha256, sha(data));
      assert.equal(got.bytes, 4096);
      assert.deepEqual(Buffer.from(got.data), Buffer.from(data));
      await readArtifactUri(pathToFileURL(file).href, { expectedSha256: sha(data) });
      await assert.rejects(readArtifactUri(pathToFileURL(file).href, { expectedSha256: 'f'.repeat(64) }), ArtifactIntegrityError);
      await assert.rejects(readArtifactUri(pathToFileURL(path.join(tmp, 'nope')).href), ArtifactNotFoundError);

    } finally {
      await fsp.rm(tmp, { recursive: true, force: true });
    }
  });
});
