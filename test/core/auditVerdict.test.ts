/**
 * The pure parts of audits: the verdict rules (integrity included), the MAD anomaly index,
 * the request schema (formats other than tfjs layers rejected with a clear message, policy
 * defaults, purify config checked up front), history keys, the webhook secrets and
 * signatures, the Markdown report, and the schedule texts of the CLI.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { auditVerdict, type VerdictInput } from '../../core/audit/verdict';
import { anomalyIndices, MAD_CONSISTENCY } from '../../core/audit/neuralCleanse';
import { AuditRequest, ncOptionsOf, parseAuditRequest, purifyConfigFor } from '../../schemas/audit';
import { PurifyConfig } from '../../schemas/purify';
import { historyKey, lastRecord } from '../../core/audit/history';
import { resolveSigningSecret, resolveWebhookUrl, WebhookSecretError } from '../../core/audit/webhookSecret';
import { signWebhook, verifyWebhookSignature } from '../../core/audit/webhookSignature';
import { integrityCheck } from '../../core/audit/integrity';
import { auditMarkdown, type AuditReport } from '../../core/audit/report';
import { backfillSummary, describeSpec, VERDICT_EXIT } from '../../cli/audit';
import { readConfigFile } from '../../cli/config';

const thresholds = { probeAsr: 50, maxAccuracyDrop: 5 };
const asr = (hot: Record<number, number>) => Array.from({ length: 10 }, (_, c) => hot[c] ?? 0.5);
const probe = (attack: string, hot: Record<number, number>) => {
  const a = asr(hot);
  const worstClass = a.indexOf(Math.max(...a));
  return { attack, status: 'probed' as const, asrByClass: a, worstClass, worstAsr: a[worstClass] };
};
const nc = (flagged: number[]) => {
  const maskL1 = Array.from({ length: 10 }, (_, c) => (flagged.includes(c) ? 9 : 100 + c));
  return {
    flagged,
    indices: Array.from({ length: 10 }, (_, c) => (flagged.includes(c) ? 3.4 : 0.6)),
    maskL1,
    candidate: maskL1.indexOf(Math.min(...maskL1)),
  };
};
const base: VerdictInput = { accuracy: { current: 97, comparable: false }, probes: [probe('badnets', {}), probe('blended', {})], neuralCleanse: nc([]) };

describe('audit verdict', () => {
  it('is clean when no probe reaches the threshold and NC flags nothing, and says so with the numbers', () => {
    const v = auditVerdict(base, thresholds);
    assert.equal(v.verdict, 'clean');
    assert.deepEqual(v.suspectClasses, []);
    assert.match(v.reasons.join('\n'), /no known trigger reaches 50\.0% towards any class \(highest: badnets 0\.5% towards class 0\)/);
    assert.match(v.reasons.join('\n'), /Neural Cleanse flags no class \(smallest reversed trigger: class 0, mask L1 100\.0, anomaly index 0\.60; no known trigger points there\)/);
  });

  it('is backdoored when a probe and NC point at the same class', () => {
    const v = auditVerdict({ ...base, probes: [probe('badnets', { 0: 100 })], neuralCleanse: nc([0]) }, thresholds);
    assert.equal(v.verdict, 'backdoored');
    assert.deepEqual(v.suspectClasses, [0]);
    assert.equal(v.reasons[0], 'known trigger towards class 0 (badnets 100.0%) and Neural Cleanse flags class 0 (mask L1 9.0, anomaly index 3.40)');
  });

  it('is backdoored when a probe hits the class with the smallest reversed trigger, even below the MAD threshold', () => {
    // measured on the BadNets fixture (50 steps per class): class 0's reversed trigger is the bottom-right
    // patch (L1 7.7) while the natural classes of the gratings need 27..176, too spread for the MAD index to pass 2
    const maskL1 = [7.7, 101.7, 175.9, 172.0, 106.1, 60.5, 65.1, 148.6, 58.2, 27.1];
    const a = anomalyIndices(maskL1, 2);
    assert.deepEqual(a.flagged, []);
    const v = auditVerdict({ ...base, probes: [probe('badnets', { 0: 100 })], neuralCleanse: { flagged: a.flagged, indices: a.indices, maskL1, candidate: 0 } }, thresholds);
    assert.equal(v.verdict, 'backdoored');
    assert.match(v.reasons[0], /^known trigger towards class 0 \(badnets 100\.0%\) and Neural Cleanse's smallest reversed trigger is class 0's \(mask L1 7\.7, median 83\.4, anomaly index 1\.25\)$/);
  });

  it('is only suspicious when one check points at a class, or the two disagree', () => {
    const probeOnly = auditVerdict({ ...base, probes: [probe('sig', { 5: 96.7 })] }, thresholds);
    assert.equal(probeOnly.verdict, 'suspicious');
    assert.match(probeOnly.reasons[0], /known trigger towards class 5 \(sig 96\.7%, threshold 50\.0%\); Neural Cleanse points elsewhere \(smallest reversed trigger: class 0\)/);
    const ncOnly = auditVerdict({ ...base, neuralCleanse: nc([3]) }, thresholds);
    assert.equal(ncOnly.verdict, 'suspicious');
    assert.match(ncOnly.reasons[0], /Neural Cleanse flags class 3 .*; no known trigger reaches 50\.0% towards it/);
    const disagree = auditVerdict({ ...base, probes: [probe('badnets', { 0: 100 })], neuralCleanse: nc([4]) }, thresholds);
    assert.equal(disagree.verdict, 'suspicious');
    assert.deepEqual(disagree.suspectClasses, [0, 4]);
    const noNc = auditVerdict({ ...base, probes: [probe('badnets', { 0: 100 })], neuralCleanse: undefined }, thresholds);
    assert.equal(noNc.verdict, 'suspicious', 'without the scan a probe alone cannot make it backdoored');
    assert.match(noNc.reasons[0], /Neural Cleanse disabled/);
    // a scan whose reversed triggers all fail (too small a budget) points nowhere
    const failedScan = auditVerdict({ ...base, probes: [probe('badnets', { 0: 100 })], neuralCleanse: { ...nc([]), candidate: undefined } }, thresholds);
    assert.equal(failedScan.verdict, 'suspicious');
    assert.match(failedScan.reasons[0], /no reversed trigger of Neural Cleanse works/);
  });

  it('treats the threshold as inclusive and ignores skipped probes', () => {
    assert.equal(auditVerdict({ ...base, probes: [probe('badnets', { 2: 50 })] }, thresholds).verdict, 'suspicious');
    assert.equal(auditVerdict({ ...base, probes: [probe('badnets', { 2: 49.9 })] }, thresholds).verdict, 'clean');
    const skipped = { attack: 'narcissus', status: 'skipped' as const };
    assert.equal(auditVerdict({ ...base, probes: [skipped] }, thresholds).verdict, 'clean');
  });

  it('flags an accuracy regression against a comparable previous audit, and a policy minimum', () => {
    const dropped = auditVerdict({ ...base, accuracy: { current: 90, previous: 97, comparable: true } }, thresholds);
    assert.equal(dropped.verdict, 'suspicious');
    assert.match(dropped.reasons[0], /clean accuracy fell from 97\.0% to 90\.0% since the previous audit \(allowed drop 5\.0 points\)/);
    // a previous audit on another reference set is not compared
    assert.equal(auditVerdict({ ...base, accuracy: { current: 90, previous: 97, comparable: false } }, thresholds).verdict, 'clean');
    assert.equal(auditVerdict({ ...base, accuracy: { current: 93, previous: 97, comparable: true } }, thresholds).verdict, 'clean');
    const low = auditVerdict(base, { ...thresholds, minimumAccuracy: 98 });
    assert.equal(low.verdict, 'suspicious');
    assert.match(low.reasons[0], /clean accuracy 97\.0% is below the policy minimum 98\.0%/);
  });
});

describe('integrity in the verdict', () => {
  const d = (c: string) => c.repeat(64);
  const previous = { digest: d('a'), auditId: 'audit-m-1', startedAt: '2025-01-01T00:00:00.000Z' };

  it('compares with the pinned digest when there is one, else with the previous audit', () => {
    assert.equal(integrityCheck(d('a'), undefined, undefined).status, 'first');
    assert.equal(integrityCheck(d('a'), undefined, previous).status, 'unchanged');
    assert.equal(integrityCheck(d('b'), undefined, previous).status, 'changed');
    // pinned: the previous audit does not matter, a change stays a change at every audit
    assert.equal(integrityCheck(d('b'), d('b'), previous).status, 'unchanged');
    const pinnedFirst = integrityCheck(d('b'), d('a'), undefined);
    assert.equal(pinnedFirst.status, 'changed');
    assert.equal(pinnedFirst.expectedDigest, d('a'));
    assert.equal(integrityCheck(d('b'), d('a'), { ...previous, digest: d('b') }).status, 'changed');
  });

  it('gives the verdict changed when every probe is clean, and keeps the clean details', () => {
    const v = auditVerdict({ ...base, integrity: integrityCheck(d('b'), d('a'), undefined) }, thresholds);
    assert.equal(v.verdict, 'changed');
    assert.match(v.reasons[0], /^the model's digest bbbbbbbbbbbb is not the pinned \(approved\) digest aaaaaaaaaaaa/);
    assert.match(v.reasons.join('\n'), /no known trigger reaches 50\.0%/);
    const unpinned = auditVerdict({ ...base, integrity: integrityCheck(d('b'), undefined, previous) }, thresholds);
    assert.equal(unpinned.verdict, 'changed');
    assert.match(unpinned.reasons[0], /changed since audit audit-m-1 \(aaaaaaaaaaaa -> bbbbbbbbbbbb\).*policy\.integrity\.expectedDigest/);
    assert.equal(auditVerdict({ ...base, integrity: integrityCheck(d('a'), d('a'), previous) }, thresholds).verdict, 'clean');
    assert.equal(auditVerdict({ ...base, integrity: integrityCheck(d('a'), undefined, undefined) }, thresholds).verdict, 'clean');
  });

  it('outranks suspicious, and is outranked by backdoored (its reason still listed)', () => {
    const integrity = integrityCheck(d('b'), d('a'), undefined);
    const suspicious = auditVerdict({ ...base, probes: [probe('badnets', { 0: 100 })], neuralCleanse: undefined, integrity }, thresholds);
    assert.equal(suspicious.verdict, 'changed');
    assert.match(suspicious.reasons[1], /known trigger towards class 0/);
    const backdoored = auditVerdict({ ...base, probes: [probe('badnets', { 0: 100 })], neuralCleanse: nc([0]), integrity }, thresholds);
    assert.equal(backdoored.verdict, 'backdoored');
    assert.match(backdoored.reasons[0], /^known trigger towards class 0/);
    assert.match(backdoored.reasons[1], /not the pinned \(approved\) digest/);
  });

  it('has its own exit code; the others keep theirs', () => {
    assert.deepEqual(VERDICT_EXIT, { clean: 0, suspicious: 3, backdoored: 4, changed: 5 });
  });

  it('accepts a pin only as a full sha256', () => {
    const request = { modelId: 'm', model: { layersModel: 'm/model.json' }, referenceSet: { format: 'ntml', location: 'r.ntds' } };
    assert.equal(parseAuditRequest({ ...request, policy: { integrity: { expectedDigest: d('c') } } }).policy.integrity.expectedDigest, d('c'));
    const r = AuditRequest.safeParse({ ...request, policy: { integrity: { expectedDigest: 'c'.repeat(12) } } });
    assert.ok(!r.success);
    assert.match(r.error.issues[0].path.join('.'), /^policy\.integrity\.expectedDigest$/);
  });
});

describe('MAD anomaly index', () => {
  it('uses the 1.4826-scaled median absolute deviation and flags only the small side', () => {
    const l1 = [9, 100, 110, 90, 105, 95, 300, 98, 102, 101];
    const a = anomalyIndices(l1, 2);
    // median of [9, 90, 95, 98, 100, 101, 102, 105, 110, 300] = 100.5; the median of |x - 100.5| is (4.5 + 5.5) / 2 = 5
    assert.equal(a.median, 100.5);
    assert.ok(Math.abs(a.mad - MAD_CONSISTENCY * 5) < 1e-9);
    assert.ok(Math.abs(a.indices[0] - 91.5 / (1.4826 * 5)) < 1e-9);
    assert.deepEqual(a.flagged, [0], 'class 6 is as anomalous, but on the large side');
    assert.ok(a.indices[6] > 2);
  });

  it('has no NaN when most norms are equal', () => {
    const a = anomalyIndices([5, 5, 5, 5, 1], 2);
    assert.deepEqual(a.indices, [0, 0, 0, 0, Infinity]);
    assert.deepEqual(a.flagged, [4]);
  });
});

describe('audit request schema', () => {
  const valid = {
    modelId: 'shop-classifier',
    model: { layersModel: 's3://models/shop/model.json' },
    referenceSet: { format: 'ntml', location: 'reference.ntds' },
  };
  const issues = (raw: unknown) => {
    const r = AuditRequest.safeParse(raw);
    assert.ok(!r.success, 'should be rejected');
    return r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('\n');
  };

  it('fills the policy defaults', () => {
    const r = parseAuditRequest(valid);
    assert.deepEqual(r.policy.accuracy, { maxDrop: 5 });
    assert.deepEqual(r.policy.probes, { asrThreshold: 50, strength: 1, exclude: [] });
    assert.equal(r.policy.neuralCleanse.enabled, true);
    assert.equal(r.policy.neuralCleanse.stepsPerClass, 300);
    assert.equal(r.policy.neuralCleanse.anomalyThreshold, 2);
    assert.deepEqual(ncOptionsOf(r.policy).cost, { mode: 'schedule', initial: 1e-3, roundSteps: 10, patience: 3, multiplier: 1.5 });
    assert.deepEqual(ncOptionsOf(parseAuditRequest({ ...valid, policy: { neuralCleanse: { cost: 0.01 } } }).policy).cost, { mode: 'fixed', value: 0.01 });
  });

  it('rejects other model formats, naming the format and how to convert', () => {
    for (const [file, format] of [
      ['model.onnx', 'ONNX'],
      ['s3://b/model.h5', 'Keras'],
      ['weights.pt', 'PyTorch'],
      ['saved/model.pb', 'TensorFlow SavedModel'],
    ]) {
      const text = issues({ ...valid, model: { layersModel: file } });
      assert.match(text, new RegExp(`model.layersModel: ${file.replace(/[./]/g, '\\$&')} looks like ${format}`));
      assert.match(text, /tensorflowjs_converter --output_format=tfjs_layers_model/);
    }
    assert.match(issues({ ...valid, model: { layersModel: 'models/shop' } }), /expected the model.json of a tfjs layers model/);
  });

  it('wants exactly one model source', () => {
    assert.match(issues({ ...valid, model: {} }), /give exactly one of `artifact`/);
    const artifact = { uri: 's3://b/cas/ab/x', sha256: 'a'.repeat(64), bytes: 10 };
    assert.match(issues({ ...valid, model: { artifact, layersModel: 'm/model.json' } }), /give exactly one of `artifact`/);
    assert.match(issues({ ...valid, model: { artifact: { ...artifact, sha256: 'xyz' } } }), /model.artifact.sha256: 64 lowercase hex/);
    assert.ok(AuditRequest.safeParse({ ...valid, model: { artifact } }).success);
  });

  it('checks model ids, webhook secret names, excluded attacks and the purify config up front', () => {
    assert.match(issues({ ...valid, modelId: '../etc' }), /modelId:/);
    assert.match(issues({ ...valid, policy: { webhook: { secret: 'https://hooks.example/xyz' } } }), /policy.webhook.secret: upper-case letters/);
    assert.match(issues({ ...valid, policy: { probes: { exclude: ['badnet'] } } }), /policy.probes.exclude.0: unknown attack "badnet"; known attacks: badnets,/);
    const purify = { trainingSet: { format: 'ntml', location: 't.ntds' }, cleanSet: { format: 'ntml', location: 'c.ntds' } };
    assert.ok(AuditRequest.safeParse({ ...valid, policy: { purifyOnBackdoored: purify } }).success);
    assert.match(issues({ ...valid, policy: { purifyOnBackdoored: { ...purify, config: { seed: -1 } } } }), /policy.purifyOnBackdoored.config.seed:/);
    assert.match(issues({ ...valid, policy: { purifyOnBackdoored: { cleanSet: purify.cleanSet } } }), /policy.purifyOnBackdoored.trainingSet/);
  });

  it('accepts examples/audit.yaml as it is shipped', () => {
    const file = path.join(__dirname, '..', '..', '..', 'examples', 'audit.yaml');
    const r = parseAuditRequest(readConfigFile(file), file);
    assert.equal(r.modelId, 'demo-classifier');
    assert.equal(r.model.layersModel, 'runs/demo-model/model/model.json');
    assert.deepEqual(r.referenceSet, { format: 'ntml', location: 'runs/reference.ntds' });
    assert.deepEqual(r.policy.webhook, { secret: 'OPS_ALERTS', maxAttempts: 5 });
    assert.deepEqual(r.policy.probes.exclude, ['sig']);
  });

  it('builds a protection-mode purify config with the exported model as the standard model', () => {
    const r = parseAuditRequest({
      ...valid,
      policy: { purifyOnBackdoored: { trainingSet: { format: 'ntml', location: 't.ntds' }, cleanSet: { format: 'ntml', location: 'c.ntds' }, config: { seed: 3, mode: 'evaluation' } } },
    });
    const cfg = PurifyConfig.parse(purifyConfigFor(r, '/exports/abc/model.json'));
    assert.equal(cfg.mode, 'protection', 'the policy cannot turn it into an evaluation run');
    assert.equal(cfg.seed, 3);
    assert.equal(cfg.name, 'audit-shop-classifier');
    assert.equal(cfg.standardModel?.layersModel, '/exports/abc/model.json');
  });
});

describe('audit history keys', () => {
  it('sort chronologically and stay valid record keys', () => {
    const a = historyKey('m1', '2025-01-02T03:04:05.000Z', 'audit-m1-2025-01-02T03:04:05Z');
    const b = historyKey('m1', '2025-01-10T00:00:00.000Z', 'x');
    assert.equal(a, 'audits/m1/history/2025-01-02T03-04-05.000Z--audit-m1-2025-01-02T03_04_05Z');
    assert.ok(a < b);
    const records = [
      { key: a, digest: 'd1' },
      { key: b, digest: undefined },
    ];
    assert.equal(lastRecord(records, (r) => r.digest !== undefined)?.key, a);
    assert.equal(lastRecord(records, () => true, b)?.key, a, 'records from the current audit on are ignored');
  });
});

describe('webhook secret', () => {
  it('comes from NTML_WEBHOOK_<NAME> or the file named by NTML_WEBHOOK_<NAME>_FILE, and errors never show it', async () => {
    assert.equal((await resolveWebhookUrl('OPS', { NTML_WEBHOOK_OPS: ' https://hooks.example/T0/abc?k=1 ' })).href, 'https://hooks.example/T0/abc?k=1');
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ntml-secret-'));
    try {
      await fs.writeFile(path.join(dir, 'url'), 'http://127.0.0.1:9/x\n');
      assert.equal((await resolveWebhookUrl('OPS', { NTML_WEBHOOK_OPS_FILE: path.join(dir, 'url') })).href, 'http://127.0.0.1:9/x');
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
    await assert.rejects(resolveWebhookUrl('OPS', {}), (e: Error) => e instanceof WebhookSecretError && /neither NTML_WEBHOOK_OPS nor NTML_WEBHOOK_OPS_FILE/.test(e.message));
    await assert.rejects(resolveWebhookUrl('OPS', { NTML_WEBHOOK_OPS: 'ftp://secret-token@x' }), (e: Error) => /http\(s\)/.test(e.message) && !e.message.includes('secret-token'));
    await assert.rejects(resolveWebhookUrl('OPS', { NTML_WEBHOOK_OPS: 'not a url tok123' }), (e: Error) => !e.message.includes('tok123'));
  });
});

describe('webhook signatures', () => {
  const secret = 'whsec-test-0123456789abcdef';
  const body = JSON.stringify({ event: 'ntml.audit.completed', verdict: 'changed' });

  it('sign "<t>.<body>" with HMAC-SHA256, verifiable within the tolerance only', () => {
    const header = signWebhook(body, secret, 1_700_000_000);
    assert.match(header, /^t=1700000000,v1=[0-9a-f]{64}$/);
    // the documented recipe, with node:crypto alone
    assert.equal(header.split('v1=')[1], createHmac('sha256', secret).update(`1700000000.${body}`).digest('hex'));
    assert.deepEqual(verifyWebhookSignature(body, header, secret, { now: 1_700_000_100 }), { ok: true, timestamp: 1_700_000_000 });
    const stale = verifyWebhookSignature(body, header, secret, { now: 1_700_000_000 + 301 });
    assert.equal(stale.ok, false);
    assert.match((stale as { reason: string }).reason, /timestamp 1700000000 is 301 s from now \(tolerance 300 s\)/);
    assert.equal(verifyWebhookSignature(`${body} `, header, secret, { now: 1_700_000_000 }).ok, false, 'another body');
    assert.equal(verifyWebhookSignature(body, header, `${secret}x`, { now: 1_700_000_000 }).ok, false, 'another secret');
    // a replay with a fresh timestamp but the old signature does not verify
    assert.equal(verifyWebhookSignature(body, header.replace('t=1700000000', 't=1700000500'), secret, { now: 1_700_000_500 }).ok, false);
    assert.equal(verifyWebhookSignature(body, undefined, secret).ok, false);
    assert.equal(verifyWebhookSignature(body, 'v1=abc', secret).ok, false);
  });

  it('use a signing secret the worker holds, refused when missing or short', async () => {
    assert.equal(await resolveSigningSecret('OPS', { NTML_WEBHOOK_OPS_SIGNING_SECRET: secret }), secret);
    await assert.rejects(resolveSigningSecret('OPS', {}), /neither NTML_WEBHOOK_OPS_SIGNING_SECRET nor NTML_WEBHOOK_OPS_SIGNING_SECRET_FILE/);
    await assert.rejects(resolveSigningSecret('OPS', { NTML_WEBHOOK_OPS_SIGNING_SECRET: 'short' }), (e: Error) => /at least 16 characters/.test(e.message) && !e.message.includes('short'));
  });
});

describe('audit schedule texts', () => {
  it('say how many backfilled slots run under each overlap policy', () => {
    assert.equal(backfillSummary(4, 'BUFFER_ALL'), '4 audits due; all 4 run, one after another (overlap BUFFER_ALL)');
    assert.match(backfillSummary(4, 'SKIP'), /^4 audits due; overlap SKIP runs 1 and skips 3 \(they come due while the first runs/);
    assert.match(backfillSummary(4, 'BUFFER_ONE'), /runs 2 and skips 2/);
    assert.match(backfillSummary(0, 'BUFFER_ALL'), /no audit due in this range/);
  });

  it('show a cron schedule by its expression, and spell out calendars made elsewhere', () => {
    const calendars = [{ hour: [{ start: 3, end: 3, step: 1 }], minute: [{ start: 0, end: 0, step: 1 }], dayOfWeek: [{ start: 'MONDAY', end: 'FRIDAY', step: 1 }] }];
    assert.equal(describeSpec({ calendars }, '0 3 * * 1-5'), 'cron "0 3 * * 1-5"');
    assert.equal(describeSpec({ calendars }), 'calendar dayOfWeek MONDAY-FRIDAY, hour 3, minute 0');
    // intervals in the largest unit that divides them whole: "every 86400 s" read as nothing
    assert.equal(describeSpec({ intervals: [{ every: 86_400_000 }] }), 'every 1 day');
    assert.equal(describeSpec({ intervals: [{ every: 7 * 86_400_000 }] }), 'every 7 days');
    assert.equal(describeSpec({ intervals: [{ every: 3_600_000 }] }), 'every 1 h');
    assert.equal(describeSpec({ intervals: [{ every: 6 * 3_600_000 }] }), 'every 6 h');
    assert.equal(describeSpec({ intervals: [{ every: 36 * 3_600_000 }] }), 'every 36 h');
    assert.equal(describeSpec({ intervals: [{ every: 90 * 60_000 }] }), 'every 90 min');
    assert.equal(describeSpec({ intervals: [{ every: 90_000 }] }), 'every 90 s');
    assert.equal(describeSpec({ intervals: [{ every: 1500 }] }), 'every 1.5 s');
  });
});

describe('audit Markdown', () => {
  it('shows the verdict, a changed digest, the probe table and an undelivered webhook', () => {
    const ref = { uri: 's3://b/cas/aa/x', sha256: 'a'.repeat(64), bytes: 1 };
    const report: AuditReport = {
      auditId: 'audit-m-1',
      modelId: 'm',
      startedAt: '2025-01-01T00:00:00.000Z',
      finishedAt: '2025-01-01T00:01:00.000Z',
      model: { source: 'file:///m/model.json', digest: 'b'.repeat(64), files: [], arch: 'tinyCnn', inputShape: [32, 32, 3], numClasses: 3, inputRange: '0-1', stored: ref },
      referenceSet: { source: 'ntml ref.ntds', digest: 'c'.repeat(64), size: 30, numClasses: 3, stored: ref },
      integrity: { status: 'changed', digest: 'b'.repeat(64), previousDigest: 'd'.repeat(64), previousAuditId: 'audit-m-0', previousAuditAt: '2024-12-31T00:00:00.000Z' },
      accuracy: { current: 90, referenceSize: 30, previous: 95, previousAuditId: 'audit-m-0', change: -5, comparable: true },
      probes: {
        seed: 1,
        referenceSize: 30,
        asrThreshold: 50,
        probes: [
          { attack: 'badnets', status: 'probed', how: 'default trigger', asrByClass: [100, 0, 5], cleanRateByClass: [0, 0, 0], worstClass: 0, worstAsr: 100 },
          { attack: 'narcissus', status: 'skipped', how: 'skipped: learned per run' },
        ],
      },
      verdict: { verdict: 'suspicious', reasons: ['known trigger towards class 0'], suspectClasses: [0] },
      actions: { webhook: { secret: 'OPS', delivered: false, error: 'webhook OPS: HTTP 500' } },
      policy: parseAuditRequest(valid()).policy,
      backend: 'cpu',
    };
    const md = auditMarkdown(report);
    assert.match(md, /^# Audit of m: SUSPICIOUS/);
    assert.match(md, /\| integrity \| \*\*changed\*\*: `dddddddddddd…` \(audit `audit-m-0`, 2024-12-31T00:00:00.000Z\) → `bbbbbbbbbbbb…` \|/);
    assert.match(md, /\| clean accuracy \| 90\.0% on 30 reference images \(previous audit 95\.0%, change -5\.0 points\) \|/);
    assert.match(md, /\| badnets \| \*\*100\.0\*\* \| 0\.0 \| 5\.0 \| class 0 \|/);
    assert.match(md, /- \*\*narcissus\*\*: skipped: learned per run/);
    assert.match(md, /\| Neural Cleanse \| disabled by the policy \|/);
    assert.match(md, /webhook `OPS`: \*\*not delivered\*\*: webhook OPS: HTTP 500/);

    // a pinned digest; probes that move no image: no class in bold, no worst class
    const zeros = { attack: 'blended', status: 'probed' as const, how: 'default trigger', asrByClass: [0, 0, 0], cleanRateByClass: [0, 0, 0], worstClass: 0, worstAsr: 0 };
    const pinned = auditMarkdown({
      ...report,
      integrity: { status: 'changed', digest: 'b'.repeat(64), expectedDigest: 'e'.repeat(64) },
      probes: { ...report.probes, probes: [zeros] },
      verdict: { verdict: 'changed', reasons: ['replaced'], suspectClasses: [] },
    });
    assert.match(pinned, /^# Audit of m: CHANGED/);
    assert.match(pinned, /\| integrity \| \*\*changed\*\*: pinned `eeeeeeeeeeee…` → `bbbbbbbbbbbb…` \|/);
    assert.match(pinned, /\| blended \| 0\.0 \| 0\.0 \| 0\.0 \| - \|/);
    assert.doesNotMatch(pinned, /\*\*0\.0\*\*/);
    assert.match(pinned, /no trigger moves any image to another class/);
    const matching = auditMarkdown({ ...report, integrity: { status: 'unchanged', digest: 'e'.repeat(64), expectedDigest: 'e'.repeat(64) } });
    assert.match(matching, /\| integrity \| matches the pinned digest `eeeeeeeeeeee…` \|/);
  });
});

function valid() {
  return { modelId: 'm', model: { layersModel: 'm/model.json' }, referenceSet: { format: 'ntml', location: 'r.ntds' } };
}
