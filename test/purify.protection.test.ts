/**
 * Protection mode: the user's own (poisoned) training set and clean set as files, and
 * their already-trained model as f_std in the tfjs layers format. No standard training
 * runs, the trigger is unknown to the pipeline, and the purified model comes back in the
 * same layers format.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ciConfig, quietRuntime, referenceRun, runPurifyWorkflow } from './support/temporal';
import { storeFromEnv } from '../store';
import { encodeDataset } from '../core/data/codec';
import { decodeClassifier, exportLayersModel, importLayersModel } from '../core/models/layersFormat';
import { parsePurifyConfig } from '../schemas/purify';
import { prepareData } from '../core/experiment/prepareData';
import { predictLabels } from '../core/models/classifier';
import { accuracy, attackSuccessRate } from '../core/metrics';
import { imageBytes, type ImageDataset } from '../core/data/dataset';
import { tf } from '../core/tf';
import type { PurifyReport } from '../workflows/contract';

quietRuntime();

test('protection mode purifies a user-supplied backdoored layers model without knowing the trigger', { timeout: 600_000 }, async () => {
  const reference = await referenceRun();
  const store = storeFromEnv();
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ntml-protection-'));
  try {
    // The user's files: the poisoned training set, a clean set and test set, and their backdoored model.
    const evaluation = await prepareData(parsePurifyConfig(ciConfig()));
    const files = { train: path.join(dir, 'train.ntds'), clean: path.join(dir, 'clean.ntds') };
    await fs.writeFile(files.train, encodeDataset(evaluation.train));
    const clean = { ...evaluation.cleanFit, images: Buffer.concat([evaluation.cleanFit.images, evaluation.cleanHeldOut.images]), labels: Int32Array.from([...evaluation.cleanFit.labels, ...evaluation.cleanHeldOut.labels]) };
    await fs.writeFile(files.clean, encodeDataset(clean));
    // the test set as a folder of PNGs, one subfolder per class, as users keep images
    const testDir = path.join(dir, 'test-images');
    await writeImageFolder(evaluation.test!, testDir);
    const referenceReport = JSON.parse(Buffer.from(await store.get(reference.outcome.report)).toString('utf8')) as PurifyReport;
    const userModel = await decodeClassifier(await store.get(referenceReport.models.standard));
    const { modelJson } = await exportLayersModel(userModel, path.join(dir, 'deployed-model'));

    const { outcome, report } = await runPurifyWorkflow('protection', {
      mode: 'protection',
      seed: 2,
      trainingSet: { format: 'ntml', location: files.train },
      cleanSet: { format: 'ntml', location: files.clean },
      testSet: { format: 'imageFolder', dir: testDir, size: evaluation.test!.height },
      standardModel: { layersModel: modelJson },
      // the synthetic classes are oriented gratings: mirroring changes the class
      training: { augment: { padding: 4, flip: false } },
      ntml: { diagnosticSamples: 100 },
    });

    assert.equal(report.mode, 'protection');
    assert.equal(report.metrics.final.asr, undefined, 'no ASR without a known trigger');
    assert.ok(!report.stages.some((s) => s.stage === 'standardTraining' && s.resumedFromEpoch), 'no training of f_std');
    assert.equal(report.histories.standardTraining?.length ?? 0, 0, 'the user model stood in for f_std');
    assert.equal(report.split?.estimatedTarget, 0, 'split found the unknown target class');

    // The purified model, exported in the layers format, no longer follows the trigger.
    const purified = await decodeClassifier(await store.get(outcome.purifiedModel));
    const exported = await exportLayersModel(purified, path.join(dir, 'purified'));
    const reloaded = await importLayersModel(exported.modelJson);
    const b = evaluation.backdoorTest!;
    const asrBefore = attackSuccessRate(await predictLabels(userModel, b.images), b.targetLabels);
    const asrAfter = attackSuccessRate(await predictLabels(reloaded, b.images), b.targetLabels);
    console.log(`protection mode: ACC ${report.metrics.standard.acc.toFixed(1)} -> ${report.metrics.final.acc.toFixed(1)}; ASR measured outside the pipeline ${asrBefore.toFixed(1)} -> ${asrAfter.toFixed(1)}`);
    assert.ok(asrBefore >= 90);
    assert.ok(asrAfter <= 15, `ASR after protection-mode purification ${asrAfter}`);
    assert.ok(report.metrics.final.acc >= report.metrics.standard.acc - 12);
    // the PNG folder was read back pixel for pixel: ACC in the report is the ACC on the original test set
    const accOutside = accuracy(await predictLabels(reloaded, evaluation.test!), evaluation.test!.labels);
    assert.ok(Math.abs(accOutside - report.metrics.final.acc) < 1e-9, `report ACC ${report.metrics.final.acc} vs ${accOutside} on the original test set`);
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});

async function writeImageFolder(ds: ImageDataset, dir: string): Promise<void> {
  const per = imageBytes(ds);
  for (let i = 0; i < ds.labels.length; i++) {
    const classDir = path.join(dir, String(ds.labels[i]));
    await fs.mkdir(classDir, { recursive: true });
    const img = tf.tensor3d(ds.images.subarray(i * per, (i + 1) * per), [ds.height, ds.width, ds.channels], 'int32');
    await fs.writeFile(path.join(classDir, `${String(i).padStart(5, '0')}.png`), await tf.node.encodePng(img));
    img.dispose();
  }
}
