/**
 * GTSRB (German Traffic Sign Recognition Benchmark, 43 classes), the paper tier's second data
 * set (protocol.md: image folders resized to 32x32). Two layouts are found under `root`:
 * - the official archives: Final_Training/Images/00000..00042/*.ppm and Final_Test/Images/*.ppm,
 *   with the test labels in GT-final_test.csv (the separate GTSRB_Final_Test_GT.zip), optionally
 *   inside a GTSRB/ folder;
 * - the Kaggle copy: Train/0..42/*.png and Test/*.png with Test.csv (its Path column is relative
 *   to the root).
 * Images are resized whole (no ROI crop), as BackdoorBench does.
 */
import { existsSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { DatasetError, type ImageDataset } from './dataset';
import { loadImageFolder } from './imageFolder';

export const GTSRB_NUM_CLASSES = 43;

export interface GtsrbLayout {
  layout: 'official' | 'kaggle';
  trainDir: string;
  testDir: string;
  testLabels: string;
}

const isDir = (p: string) => existsSync(p) && statSync(p).isDirectory();
const isFile = (p: string) => existsSync(p) && statSync(p).isFile();

export function findGtsrbLayout(root: string, field = 'data.path'): GtsrbLayout {
  if (!isDir(root)) throw new DatasetError(`${field}: GTSRB folder ${root} not found`);
  for (const base of [root, path.join(root, 'GTSRB')]) {
    const trainDir = path.join(base, 'Final_Training', 'Images');
    const testDir = path.join(base, 'Final_Test', 'Images');
    if (!isDir(trainDir)) continue;
    if (!isDir(testDir)) throw new DatasetError(`${field}: ${trainDir} is there but ${testDir} is not (unpack GTSRB_Final_Test_Images.zip beside it)`);
    const candidates = [testDir, path.join(base, 'Final_Test'), base, root].map((d) => path.join(d, 'GT-final_test.csv'));
    const testLabels = candidates.find(isFile);
    if (!testLabels) {
      throw new DatasetError(
        `${field}: GTSRB test labels GT-final_test.csv (from GTSRB_Final_Test_GT.zip) not found; looked in ${candidates.join(', ')}` +
          ' (GT-final_test.test.csv in the image archive has no ClassId column)',
      );
    }
    return { layout: 'official', trainDir, testDir, testLabels };
  }
  const kaggleTrain = path.join(root, 'Train');
  if (isDir(kaggleTrain)) {
    const testLabels = path.join(root, 'Test.csv');
    if (!isFile(testLabels)) throw new DatasetError(`${field}: ${kaggleTrain} is there but ${testLabels} is not`);
    return { layout: 'kaggle', trainDir: kaggleTrain, testDir: root, testLabels };
  }
  throw new DatasetError(
    `${field}: ${root} holds neither GTSRB layout: expected Final_Training/Images/00000..00042 and Final_Test/Images with GT-final_test.csv (official), or Train/0..42 with Test.csv (Kaggle)`,
  );
}

export async function loadGtsrb(root: string, split: 'train' | 'test', size = 32, field = 'data.path'): Promise<ImageDataset> {
  const layout = findGtsrbLayout(root, field);
  const common = { size, channels: 3 as const, numClasses: GTSRB_NUM_CLASSES, field: `${field} (GTSRB ${split})` };
  const ds =
    split === 'train'
      ? await loadImageFolder(layout.trainDir, common)
      : await loadImageFolder(layout.testDir, { ...common, labels: layout.testLabels });
  return { ...ds, name: `gtsrb:${split}` };
}
