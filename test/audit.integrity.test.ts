/**
 * Integrity and failure handling of audits on the real Temporal server and S3 store: the
 * deployed model's digest is compared with the previous audit (a replaced model on S3 gets
 * the verdict changed, with the accuracy change beside it) or with a pinned digest (one
 * flipped byte of weights.bin is enough, at every audit, and the signed webhook says so),
 * and a missing or corrupt model fails the audit once, with a message naming the file and
 * the problem, and a history record.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { WorkflowFailedError } from '@temporalio/client';
import { ActivityFailure, ApplicationFailure, RetryState } from '@temporalio/common';
import { inProcessWorkers, quietRuntime, taskQueues } from './support/temporal';
import { auditRequest, auditTestSetup, documentedSignatureCheck, hookServer, TEST_SIGNING_SECRET } from './support/auditHarness';
import { backdooredFixture, cleanModel } from './support/auditFixtures';
import { createS3Client, parseS3Location, s3OptionsFromEnv, storeFromEnv } from '../store';
import { casKey } from '../store/keys';
import { exportLayersModel } from '../core/models/layersFormat';
import { readHistory } from '../core/audit/history';
import type { AuditInput } from '../workflows/contract';
import type { AuditOutcome } from '../core/audit/report';

quietRuntime();

const setup = auditTestSetup('audit-integrity');

/** model.json + weights.bin of `model` uploaded next to each other under s3://<store bucket>/<key prefix>/. */
async function uploadLayersModel(which: 'clean' | 'backdoored', keyPrefix: string): Promise<string> {
  const c = which === 'clean' ? await cleanModel() : await (await backdooredFixture()).model();
  const local = path.join(setup.dir, `${which}-${Date.now()}`);
  await exportLayersModel(c, local);
  c.model.dispose();
  const { bucket } = parseS3Location(storeFromEnv().location);
  const s3 = createS3Client(s3OptionsFromEnv());
  try {
    for (const file of ['weights.bin', 'model.json']) {
      await s3.send(new PutObjectCommand({ Bucket: bucket, Key: `${keyPrefix}/${file}`, Body: await fs.readFile(path.join(local, file)) }));
    }
  } finally {
    s3.destroy();
  }
  return `s3://${bucket}/${keyPrefix}/model.json`;
}

function runAudits<T>(tag: string, f: (run: (request: unknown, id: string) => Promise<AuditOutcome>) => Promise<T>): Promise<T> {
  const queues = taskQueues(tag);
  return inProcessWorkers(queues).then((workers) =>
    workers.run(() =>
      f(
        (request, id) =>
          setup.client.workflow.execute('audit', {
            taskQueue: queues.orchestration,
            workflowId: id,
            args: [{ request, options: { trainingTaskQueue: queues.training } } satisfies AuditInput],
          }) as Promise<AuditOutcome>,
      ),
    ),
  );
}

test('a model replaced at the same S3 location is reported as changed, against the previous audit', { timeout: 300_000 }, async () => {
  const modelId = `replaced-${Date.now().toString(36)}`;
  const keyPrefix = `deployed/${modelId}`;
  const location = await uploadLayersModel('clean', keyPrefix);
  const request = auditRequest({
    modelId,
    model: { layersModel: location },
    referenceSet: { format: 'ntml', location: setup.reference },
    // integrity and accuracy are under test here, not the scan
    policy: { neuralCleanse: { enabled: false } },
  });
  const [first, second, third] = await runAudits('audit-integrity', async (run) => {
    const first = await run(request, `audit-${modelId}-1`);
    const second = await run(request, `audit-${modelId}-2`);
    await uploadLayersModel('backdoored', keyPrefix);
    const third = await run(request, `audit-${modelId}-3`);
    return [first, second, third];
  });
  assert.equal(first.integrity.status, 'first');
  assert.equal(second.integrity.status, 'unchanged');
  assert.equal(second.integrity.previousAuditId, first.auditId);
  assert.equal(second.integrity.digest, first.integrity.digest);
  assert.equal(third.integrity.status, 'changed');
  assert.equal(third.integrity.previousDigest, first.integrity.digest);
  assert.equal(third.integrity.previousAuditId, second.auditId);
  assert.notEqual(third.integrity.digest, first.integrity.digest);
  // the accuracy check compares with the previous audit on the same reference set
  assert.equal(third.accuracy.previousAuditId, second.auditId);
  assert.equal(third.accuracy.comparable, true);
  assert.ok(Math.abs(third.accuracy.change! - (third.accuracy.current - second.accuracy.current)) < 1e-9);
  // the replacement is the backdoored model: the BadNets probe alone would make it suspicious (scan
  // disabled), but an unexpected digest outranks that: the verdict is changed, both reasons listed
  assert.equal(first.verdict, 'clean');
  assert.equal(second.verdict, 'clean');
  assert.equal(third.verdict, 'changed');
  assert.match(third.reasons[0], /the model's digest changed since audit audit-replaced-\w+-2/);
  assert.ok(third.reasons.some((r) => /known trigger towards class 0 \(badnets/.test(r)), third.reasons.join('\n'));

  const store = storeFromEnv();
  const markdown = Buffer.from(await store.get(third.markdown)).toString('utf8');
  assert.match(markdown, /\| integrity \| \*\*changed\*\*: `[0-9a-f]{12}…` \(audit `audit-replaced-\w+-2`, [^)]+\) → `[0-9a-f]{12}…` \|/);
  const history = await readHistory(store, modelId);
  assert.deepEqual(history.map((h) => h.integrity), ['first', 'unchanged', 'changed']);
  assert.deepEqual(history.map((h) => h.verdict), ['clean', 'clean', 'changed']);
  assert.deepEqual(history.map((h) => h.auditId), [first.auditId, second.auditId, third.auditId]);
});

test('a pinned digest: one flipped byte of weights.bin gives the verdict changed at every audit, in history and signed webhook', { timeout: 300_000 }, async () => {
  const modelId = `pinned-${Date.now().toString(36)}`;
  const folder = path.join(setup.dir, modelId);
  const c = await cleanModel();
  await exportLayersModel(c, folder);
  c.model.dispose();
  const modelJson = path.join(folder, 'model.json');
  const hook = await hookServer();
  process.env.NTML_WEBHOOK_PINNED_HOOK = `${hook.url}/pinned`;
  process.env.NTML_WEBHOOK_PINNED_HOOK_SIGNING_SECRET = TEST_SIGNING_SECRET;
  const { deployedModelDigest } = await import('../core/audit/deployedModel');
  const approved = (await deployedModelDigest({ layersModel: modelJson }, s3OptionsFromEnv())).digest;
  const request = auditRequest({
    modelId,
    model: { layersModel: modelJson },
    referenceSet: { format: 'ntml', location: setup.reference },
    policy: { neuralCleanse: { enabled: false }, integrity: { expectedDigest: approved }, webhook: { secret: 'PINNED_HOOK', maxAttempts: 2 } },
  });
  try {
    const [approvedRun, flipped, again] = await runAudits('audit-pinned', async (run) => {
      const approvedRun = await run(request, `audit-${modelId}-1`);
      // one byte of the deployed weights flipped in place: same files, same sizes, same location
      const weights = path.join(folder, 'weights.bin');
      const bytes = await fs.readFile(weights);
      bytes[Math.floor(bytes.length / 2)] ^= 0x01;
      await fs.writeFile(weights, bytes);
      const flipped = await run(request, `audit-${modelId}-2`);
      // pinned, the next audit is still changed (without a pin it would compare with audit 2 and pass)
      const again = await run(request, `audit-${modelId}-3`);
      return [approvedRun, flipped, again];
    });
    assert.equal(approvedRun.verdict, 'clean', approvedRun.reasons.join('\n'));
    assert.equal(approvedRun.integrity.status, 'unchanged');
    assert.equal(approvedRun.integrity.digest, approved);
    for (const o of [flipped, again]) {
      assert.equal(o.verdict, 'changed', o.reasons.join('\n'));
      assert.equal(o.integrity.status, 'changed');
      assert.equal(o.integrity.expectedDigest, approved);
      assert.notEqual(o.integrity.digest, approved);
      assert.match(o.reasons[0], new RegExp(`is not the pinned \\(approved\\) digest ${approved.slice(0, 12)}`));
      // the flipped byte did not move a single prediction: the probes alone would have passed it
      assert.ok(o.reasons.some((r) => /no known trigger (reaches|moves)/.test(r)), o.reasons.join('\n'));
    }
    // the history carries it
    const history = await readHistory(storeFromEnv(), modelId);
    assert.deepEqual(history.map((h) => [h.verdict, h.integrity, h.expectedDigest]), [
      ['clean', 'unchanged', approved],
      ['changed', 'changed', approved],
      ['changed', 'changed', approved],
    ]);
    // so does the webhook, signed: the receiver's documented check passes, and a replay later is refused
    assert.equal(hook.received.length, 3);
    const notice = hook.received[1];
    assert.equal(notice.signature, 'ok');
    assert.equal(notice.body.verdict, 'changed');
    assert.equal(notice.body.integrity, 'changed');
    assert.equal(notice.body.expectedDigest, approved);
    assert.equal(notice.body.digest, flipped.integrity.digest);
    const header = String(notice.headers['ntml-signature']);
    const sentAt = Number(/^t=(\d+),/.exec(header)![1]);
    assert.equal(documentedSignatureCheck(notice.raw, header, TEST_SIGNING_SECRET, sentAt + 301), 'stale');
    assert.equal(documentedSignatureCheck(notice.raw.replace('"changed"', '"clean"'), header, TEST_SIGNING_SECRET, sentAt), 'bad signature');
    assert.equal(flipped.webhook?.delivered, true);
  } finally {
    delete process.env.NTML_WEBHOOK_PINNED_HOOK;
    delete process.env.NTML_WEBHOOK_PINNED_HOOK_SIGNING_SECRET;
    await hook.close();
  }
});

/** The failure an audit workflow ended with: its message, and whether the activity was retried. */
async function failure(p: Promise<unknown>): Promise<{ message: string; type?: string; retryState?: RetryState }> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof WorkflowFailedError, `expected a failed workflow, got ${err}`);
    const cause = err.cause;
    assert.ok(cause instanceof ApplicationFailure, `cause ${cause}`);
    assert.equal(cause.nonRetryable, true);
    const activity = cause.cause;
    return {
      message: cause.message,
      type: cause.type ?? undefined,
      retryState: activity instanceof ActivityFailure ? activity.retryState : undefined,
    };
  }
  assert.fail('the audit should have failed');
}

test('a missing or corrupt model fails the audit once with a clear message, recorded in the history', { timeout: 300_000 }, async () => {
  const store = storeFromEnv();
  const stamp = Date.now().toString(36);
  // 1. an artifact reference whose object is not in the store
  const missing = { uri: `${store.location}/cas/ab/${'ab'.repeat(32)}`, sha256: 'ab'.repeat(32), bytes: 1234 };
  // 2. a stored object whose bytes were overwritten afterwards (unique content: no other test shares it)
  const stored = await store.put(Buffer.from(`the deployed model of ${stamp}`));
  const { bucket, prefix } = parseS3Location(store.location);
  const s3 = createS3Client(s3OptionsFromEnv());
  await s3.send(new PutObjectCommand({ Bucket: bucket, Key: `${prefix}${casKey(stored.sha256)}`, Body: Buffer.from('tampered') }));
  s3.destroy();
  // 3. a stored object that is not a model at all (say, an ONNX file put into the store)
  const foreign = await store.put(Buffer.from(`\x08\x07\x12\x07pytorch onnx ${stamp}`));
  // 4. a layers model whose weights file was truncated
  const truncated = path.join(setup.dir, 'truncated');
  const t = await cleanModel();
  await exportLayersModel(t, truncated);
  t.model.dispose();
  const weights = await fs.readFile(path.join(truncated, 'weights.bin'));
  await fs.writeFile(path.join(truncated, 'weights.bin'), weights.subarray(0, weights.length - 400));

  const cases = [
    { name: 'missing', model: { artifact: missing }, expect: /the model artifact s3:\/\/\S+ \(sha256 (ab){32}\) is missing from the store/ },
    { name: 'corrupt', model: { artifact: stored }, expect: /the model artifact \S+ is corrupt: the store holds 8 bytes with sha256 [0-9a-f]{64}, the reference says \d+ bytes/ },
    { name: 'foreign', model: { artifact: foreign }, expect: /not an ntml model artifact \(bad magic\).*tfjs layers models only/ },
    {
      name: 'truncated',
      model: { layersModel: path.join(truncated, 'model.json') },
      expect: /the deployed model \S+truncated\/model\.json: weight files hold \d+ bytes, the manifest needs \d+/,
    },
  ];
  const t0 = Date.now();
  const results = await runAudits('audit-failures', async (run) => {
    const out = [];
    for (const k of cases) {
      const modelId = `${k.name}-${stamp}`;
      const request = auditRequest({ modelId, model: k.model, referenceSet: { format: 'ntml', location: setup.reference } });
      out.push({ ...k, modelId, failure: await failure(run(request, `audit-${modelId}`)) });
    }
    return out;
  });
  const seconds = (Date.now() - t0) / 1000;
  for (const r of results) {
    assert.match(r.failure.message, /^audit of \S+ failed: /);
    assert.match(r.failure.message, r.expect, r.failure.message);
    assert.equal(r.failure.type, 'AuditFailed');
    // the inspecting activity failed once, non-retryably: no crash loop
    assert.equal(r.failure.retryState, RetryState.NON_RETRYABLE_FAILURE);
    const history = await readHistory(store, r.modelId);
    assert.equal(history.length, 1);
    assert.equal(history[0].status, 'failed');
    assert.match(history[0].error!, r.expect);
  }
  // four failed audits take seconds, not retry backoffs
  assert.ok(seconds < 60, `failures took ${seconds} s`);
  // repair the object this test tampered with: the store is shared, and other tests check that
  // every stored artifact verifies (a put of the right bytes replaces a corrupt object)
  await store.put(Buffer.from(`the deployed model of ${stamp}`));
  assert.ok(await store.verify(stored));
});
