/**
 * Secrets stay on the workers: a full run's workflow history (every payload decoded), the
 * workers' logs at DEBUG and the run's report must not contain the S3 secret key or a webhook
 * secret. Store keys built from client-chosen ids cannot leave their folder. With
 * NTML_PAYLOAD_KEY_FILE every payload in the history is AES-256-GCM ciphertext and the run
 * still completes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import * as tls from 'node:tls';
import * as os from 'node:os';
import * as path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import type { Payload } from '@temporalio/common';
import { ciConfig, inProcessWorkers, quietRuntime, repoRoot, spawnTrainingWorker, taskQueues, temporalAddress, waitForExit } from './support/temporal';
import { FileArtifactStore, assertRecordKey, readCredentialsFile, storeFromEnv } from '../store';
import { checkpointRecordKey } from '../activities/checkpointing';
import { AesGcmPayloadCodec, ENCRYPTED_ENCODING, PayloadKeyError, payloadCodecFromEnv } from '../workers/payloadCodec';
import { connectWorker } from '../workers/createWorkers';
import { temporalSecurity, WorkerConfigError } from '../workers/env';
import { connectClient } from '../cli/temporal';
import { parsePurifyConfig } from '../schemas/purify';
import type { PurifyOutcome } from '../workflows/contract';
import type { PurifyInput } from '../workflows/contract';

quietRuntime();

/** A small NT-ML run through every stage (~10-30 s on 2 cores); a fresh seed so nothing comes from the stage cache. */
const smallRun = (name: string) =>
  ciConfig({
    name,
    seed: 2000 + (Date.now() % 100_000),
    data: { format: 'synthetic', trainSize: 400, testSize: 200 },
    cleanBudget: 60,
    training: { epochs: 2 },
    ntml: { diagnosticSamples: 50, ntEpochs: 1, mlEpochs: 2, splitEpochs: 1 },
  });

/** Every string and every byte array (as UTF-8) in a history: payload data is bytes, so it is read decoded. */
function historyText(value: unknown, out: string[] = []): string[] {
  if (value instanceof Uint8Array) out.push(Buffer.from(value).toString('utf8'));
  else if (typeof value === 'string') out.push(value);
  else if (Array.isArray(value)) for (const v of value) historyText(v, out);
  else if (value && typeof value === 'object') for (const v of Object.values(value)) historyText(v, out);
  return out;
}

/** Every Payload (an object with metadata and data) anywhere in a history. */
function payloads(value: unknown, out: Payload[] = []): Payload[] {
  if (!value || typeof value !== 'object' || value instanceof Uint8Array) return out;
  const v = value as Record<string, unknown>;
  if (v.metadata && typeof v.metadata === 'object' && 'data' in v) out.push(v as Payload);
  else for (const child of Object.values(v)) payloads(child, out);
  return out;
}

function spawnOrchestrationWorker(taskQueue: string, env: NodeJS.ProcessEnv): ChildProcess & { output: () => string } {
  const child = spawn(process.execPath, [path.join(repoRoot, 'dist', 'workers', 'orchestration.js')], {
    env: { ...env, NTML_ORCHESTRATION_TASK_QUEUE: taskQueue },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (d) => (output += d));
  child.stderr!.on('data', (d) => (output += d));
  return Object.assign(child, { output: () => output });
}

test('the S3 secret key and a webhook secret appear in no history payload, worker log or report of a full run', { timeout: 600_000 }, async () => {
  const credentialsFile = process.env.NTML_S3_CREDENTIALS_FILE;
  assert.ok(credentialsFile, 'the test stack provides S3 credentials');
  // random per test stack (infra/stack/s3.ts): a unique string nothing else contains
  const s3 = readCredentialsFile(credentialsFile);
  assert.ok(s3.secretAccessKey.length >= 30);
  const webhookSecret = `https://hooks.invalid/${randomBytes(24).toString('hex')}`;
  const secrets = { 'S3 secret key': s3.secretAccessKey, 'webhook secret': webhookSecret };

  // both workers as deployed, credentials only in their environment, logging at DEBUG
  const { NTML_S3_CREDENTIALS_FILE: _file, ...base } = process.env;
  const workerEnv = {
    ...base,
    AWS_ACCESS_KEY_ID: s3.accessKeyId,
    AWS_SECRET_ACCESS_KEY: s3.secretAccessKey,
    NTML_WEBHOOK_SECURITY: webhookSecret,
    NTML_LOG_LEVEL: 'DEBUG',
  };
  const queues = taskQueues('secrets');
  const orchestration = spawnOrchestrationWorker(queues.orchestration, workerEnv);
  // '' switches the credentials file off: the worker must use the AWS_* variables
  const training = spawnTrainingWorker(queues.training, { ...(workerEnv as Record<string, string>), NTML_S3_CREDENTIALS_FILE: '' });
  const connection = await Connection.connect({ address: temporalAddress() });
  const client = new Client({ connection });
  try {
    const workflowId = `secrets-${Date.now()}`;
    const handle = await client.workflow.start('purify', {
      taskQueue: queues.orchestration,
      workflowId,
      args: [{ config: smallRun('security'), options: { trainingTaskQueue: queues.training, cache: false } } satisfies PurifyInput],
    });
    const outcome = (await handle.result()) as PurifyOutcome;
    const history = await handle.fetchHistory();
    const text = historyText(history).join('\n');
    // the decoding works: the config's name and a stored artifact's digest are in there
    assert.ok(text.includes('"name":"security"'), 'workflow input readable in the decoded history');
    assert.ok(text.includes(outcome.purifiedModel.sha256), 'activity results readable in the decoded history');
    const store = storeFromEnv();
    const report = Buffer.from(await store.get(outcome.report)).toString('utf8') + Buffer.from(await store.get(outcome.markdown)).toString('utf8');
    const runRecord = JSON.stringify(await store.getRecord(`runs/purify/${workflowId}`));
    assert.ok(runRecord.length > 10, 'run record written');

    orchestration.kill('SIGTERM');
    training.kill('SIGTERM');
    await Promise.all([waitForExit(orchestration), waitForExit(training)]);
    const logs = orchestration.output() + training.output();
    // the logs are real: DEBUG output of both workers, activity by activity
    assert.match(training.output(), /trainStandardModel/);
    assert.match(orchestration.output(), /DEBUG|Workflow/i);
    console.log(`history ${text.length} chars, worker logs ${logs.length} chars, report ${report.length} chars`);

    for (const [what, secret] of Object.entries(secrets)) {
      for (const [where, haystack] of Object.entries({ history: text, 'worker logs': logs, report, 'run record': runRecord })) {
        assert.ok(!haystack.includes(secret), `${what} found in the ${where}`);
        // also not base64-encoded (payload bytes re-encoded as text would look like this)
        assert.ok(!haystack.includes(Buffer.from(secret).toString('base64').slice(4, 36)), `${what} (base64) found in the ${where}`);
      }
    }
  } finally {
    orchestration.kill('SIGKILL');
    training.kill('SIGKILL');
    await connection.close();
  }
});

test('a run configuration cannot carry credentials: unknown fields are rejected', () => {
  const withSecret = { ...ciConfig(), s3: { secretAccessKey: 'x' } };
  assert.throws(() => parsePurifyConfig(withSecret), /s3/);
});

test('checkpoint record keys built from hostile workflow ids stay inside checkpoints/<run>/', async () => {
  const root = mkdtempSync(path.join(os.tmpdir(), 'ntml-keys-'));
  try {
    const store = new FileArtifactStore(path.join(root, 'store'));
    const hostile = ['../../escape', 'a/../../b', '..', '.', '', '/abs', 'x\\..\\y', '.hidden', 'ok-id'];
    for (const id of hostile) {
      const key = checkpointRecordKey(id, '..', '../3', 'standard');
      assert.equal(assertRecordKey(key), key, `${JSON.stringify(id)} gives a valid key`);
      const segments = key.split('/');
      assert.equal(segments.length, 4, `${JSON.stringify(id)} -> ${key}: one segment per id`);
      assert.equal(segments[0], 'checkpoints');
      await store.putRecord(key, [{ epoch: 1 }]);
    }
    assert.equal(checkpointRecordKey('purify-demo-1', 'run', '2', 'standard'), 'checkpoints/purify-demo-1/run/2-standard', 'ordinary ids unchanged');
    // everything written is under the store's records/checkpoints folder, nothing beside it
    assert.deepEqual(readdirSync(root), ['store']);
    assert.deepEqual(readdirSync(path.join(root, 'store', 'records')), ['checkpoints']);
    assert.ok(!existsSync(path.join(root, 'escape')) && !existsSync(path.join(root, 'b')));
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('the payload codec: wrong key and tampering are refused with a clear error, plain payloads pass through', async () => {
  const codec = new AesGcmPayloadCodec([randomBytes(32)]);
  const plain: Payload = { metadata: { encoding: Buffer.from('json/plain') }, data: Buffer.from('{"secret":"s3cr3t-value"}') };
  const [sealed] = await codec.encode([plain]);
  assert.equal(Buffer.from(sealed.metadata!.encoding!).toString(), ENCRYPTED_ENCODING);
  assert.ok(!Buffer.from(sealed.data!).includes('s3cr3t-value'));
  const [opened] = await codec.decode([sealed]);
  assert.equal(Buffer.from(opened.data!).toString(), '{"secret":"s3cr3t-value"}');
  assert.equal(Buffer.from(opened.metadata!.encoding!).toString(), 'json/plain');
  // two encodings of the same payload differ (fresh IV each time)
  const [again] = await codec.encode([plain]);
  assert.notDeepEqual(Buffer.from(again.data!), Buffer.from(sealed.data!));

  await assert.rejects(new AesGcmPayloadCodec([randomBytes(32)]).decode([sealed]), PayloadKeyError);
  const tampered = Buffer.from(sealed.data!);
  tampered[20] ^= 1;
  await assert.rejects(codec.decode([{ ...sealed, data: tampered }]), /fails authentication/);
  assert.deepEqual(await codec.decode([plain]), [plain], 'payloads from before encryption stay readable');

  // rotation: the new key first encrypts, the old one still decrypts
  const oldKey = randomBytes(32);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ntml-key-'));
  try {
    const file = path.join(dir, 'key');
    writeFileSync(file, `${oldKey.toString('base64')}\n`);
    const [oldSealed] = await payloadCodecFromEnv({ NTML_PAYLOAD_KEY_FILE: file })!.encode([plain]);
    writeFileSync(file, `# rotated\n${randomBytes(32).toString('hex')}\n${oldKey.toString('base64')}\n`);
    const rotated = payloadCodecFromEnv({ NTML_PAYLOAD_KEY_FILE: file })!;
    assert.deepEqual(Buffer.from((await rotated.decode([oldSealed]))[0].data!), Buffer.from(plain.data!));
    writeFileSync(file, 'not a key\n');
    assert.throws(() => payloadCodecFromEnv({ NTML_PAYLOAD_KEY_FILE: file }), /32 bytes/);
    assert.throws(() => payloadCodecFromEnv({ NTML_PAYLOAD_KEY_FILE: path.join(dir, 'missing') }), /cannot be read \(ENOENT\)/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('with NTML_PAYLOAD_KEY_FILE every history payload is ciphertext and the run completes', { timeout: 600_000 }, async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ntml-codec-'));
  const keyFile = path.join(dir, 'payload.key');
  writeFileSync(keyFile, `${randomBytes(32).toString('base64')}\n`, { mode: 0o600 });
  process.env.NTML_PAYLOAD_KEY_FILE = keyFile;
  const connection = await Connection.connect({ address: temporalAddress() });
  try {
    const codec = payloadCodecFromEnv()!;
    const queues = taskQueues('codec');
    // the in-process workers pick the codec up from the environment, as deployed workers do
    const workers = await inProcessWorkers(queues);
    const client = new Client({ connection, dataConverter: { payloadCodecs: [codec] } });
    const workflowId = `codec-${Date.now()}`;
    const config = ciConfig({
      name: 'encrypted-run',
      seed: 3000 + (Date.now() % 100_000),
      data: { format: 'synthetic', trainSize: 300, testSize: 100 },
      cleanBudget: 60,
      defense: { name: 'none' },
      training: { epochs: 2 },
    });
    const outcome = await workers.run(async () => {
      const handle = await client.workflow.start('purify', {
        taskQueue: queues.orchestration,
        workflowId,
        args: [{ config, options: { trainingTaskQueue: queues.training, cache: false } } satisfies PurifyInput],
      });
      return (await handle.result()) as PurifyOutcome;
    });
    assert.ok(await storeFromEnv().verify(outcome.purifiedModel), 'the run completed and its model is stored');

    // what the server holds, read without the key
    const raw = await new Client({ connection }).workflow.getHandle(workflowId).fetchHistory();
    const found = payloads(raw.events);
    console.log(`${found.length} payloads in the stored history, all encrypted`);
    // workflow input and result, and the input and result of each of the 4 activities of a run without defense
    assert.ok(found.length >= 10, `payloads in the history: ${found.length}`);
    for (const p of found) {
      assert.equal(Buffer.from(p.metadata!.encoding!).toString(), ENCRYPTED_ENCODING);
      assert.equal(Buffer.from(p.metadata!['encryption-key-id']!).toString(), codec.encryptingKeyId);
    }
    const text = historyText(raw).join('\n');
    for (const plain of ['encrypted-run', outcome.purifiedModel.sha256, 'badnets']) {
      assert.ok(!text.includes(plain), `"${plain}" readable in the stored history`);
    }
  } finally {
    delete process.env.NTML_PAYLOAD_KEY_FILE;
    await connection.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

/** A CA, a server certificate for temporal.test and a client certificate, made with openssl for this test only. */
function makeCertificates(dir: string) {
  const run = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  run('req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.pem', '-subj', '/CN=ntml test CA', '-days', '2');
  for (const [name, usage, san] of [
    ['server', 'serverAuth', 'subjectAltName=DNS:temporal.test'],
    ['client', 'clientAuth', 'subjectAltName=DNS:ntml-worker'],
  ]) {
    writeFileSync(path.join(dir, `${name}.ext`), `basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=${usage}\n${san}\n`);
    run('req', ...ec, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`);
    run('x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.pem`, '-days', '2', '-extfile', `${name}.ext`);
  }
  const file = (n: string) => path.join(dir, n);
  return { ca: file('ca.pem'), serverCert: file('server.pem'), serverKey: file('server.key'), clientCert: file('client.pem'), clientKey: file('client.key') };
}

test('mTLS to Temporal: workers and the CLI connect with NTML_TEMPORAL_TLS_*; without a client certificate the server refuses', { timeout: 120_000 }, async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ntml-tls-'));
  const certs = makeCertificates(dir);
  // a TLS front end that demands a client certificate from our CA, as a self-managed cluster's frontend would
  const [host, port] = temporalAddress().split(':');
  let handshakes = 0;
  const front = tls.createServer(
    {
      key: readFileSync(certs.serverKey),
      cert: readFileSync(certs.serverCert),
      ca: readFileSync(certs.ca),
      requestCert: true,
      rejectUnauthorized: true,
      ALPNProtocols: ['h2'],
    },
    (socket) => {
      handshakes++;
      const upstream = net.connect(Number(port), host);
      socket.pipe(upstream).pipe(socket);
      socket.on('error', () => upstream.destroy());
      upstream.on('error', () => socket.destroy());
    },
  );
  await new Promise<void>((resolve) => front.listen(0, '127.0.0.1', resolve));
  const address = `127.0.0.1:${(front.address() as net.AddressInfo).port}`;
  const env = {
    NTML_TEMPORAL_TLS_CA: certs.ca,
    NTML_TEMPORAL_TLS_CERT: certs.clientCert,
    NTML_TEMPORAL_TLS_KEY: certs.clientKey,
    NTML_TEMPORAL_TLS_SERVER_NAME: 'temporal.test',
  };
  const saved = { ...process.env };
  try {
    // the worker connection (Rust core)
    const worker = await connectWorker(address, temporalSecurity(env));
    const info = await worker.workflowService.getSystemInfo({});
    assert.ok(info.capabilities, 'worker connection answered over mTLS');
    await worker.close();

    // the CLI's client (grpc-js), configured by the same variables
    Object.assign(process.env, env);
    const { client, connection } = await connectClient({ address, source: 'test' }, 'default');
    assert.ok((await client.workflowService.getSystemInfo({})).capabilities, 'CLI client answered over mTLS');
    await connection.close();
    assert.ok(handshakes >= 2, `mTLS handshakes: ${handshakes}`);

    // no client certificate: the handshake is refused, nothing reaches Temporal
    const before = handshakes;
    const noCert = { NTML_TEMPORAL_TLS_CA: certs.ca, NTML_TEMPORAL_TLS_SERVER_NAME: 'temporal.test' };
    await assert.rejects(async () => {
      const c = await connectWorker(address, temporalSecurity(noCert));
      try {
        await c.workflowService.getSystemInfo({});
      } finally {
        await c.close();
      }
    });
    // a server name the certificate does not carry fails verification
    await assert.rejects(async () => {
      const c = await connectWorker(address, temporalSecurity({ ...env, NTML_TEMPORAL_TLS_SERVER_NAME: 'other.test' }));
      try {
        await c.workflowService.getSystemInfo({});
      } finally {
        await c.close();
      }
    });
    assert.equal(handshakes, before, 'no refused client got a connection through');
  } finally {
    process.env = saved;
    await new Promise<void>((resolve) => front.close(() => resolve()));
    rmSync(dir, { recursive: true, force: true });
  }
});

test('TLS settings from the environment: API key implies TLS, half an mTLS pair and unreadable files are refused by name', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ntml-tlsenv-'));
  try {
    assert.deepEqual(temporalSecurity({}), {}, 'nothing set: plaintext (the local stack)');
    assert.deepEqual(temporalSecurity({ NTML_TEMPORAL_TLS: 'true' }), { tls: {} });
    const keyFile = path.join(dir, 'api-key');
    writeFileSync(keyFile, 'cloud-api-key-value\n');
    assert.deepEqual(temporalSecurity({ NTML_TEMPORAL_API_KEY_FILE: keyFile }), { tls: {}, apiKey: 'cloud-api-key-value' });
    assert.throws(() => temporalSecurity({ NTML_TEMPORAL_TLS_CERT: keyFile }), /both NTML_TEMPORAL_TLS_CERT and NTML_TEMPORAL_TLS_KEY/);
    assert.throws(() => temporalSecurity({ NTML_TEMPORAL_API_KEY_FILE: keyFile, NTML_TEMPORAL_TLS: 'false' }), /contradicts/);
    const missing = path.join(dir, 'nope.pem');
    assert.throws(() => temporalSecurity({ NTML_TEMPORAL_TLS_CA: missing }), (err: Error) => {
      assert.ok(err instanceof WorkerConfigError);
      assert.match(err.message, /NTML_TEMPORAL_TLS_CA=.*nope\.pem cannot be read \(ENOENT\)/);
      return true;
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
