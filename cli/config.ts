/**
 * Reading a purify config file: YAML or JSON, the `data: {format: auto}` substitution, then the
 * schema check. Nothing here starts a server or loads TensorFlow, so a bad config fails fast.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseDocument } from 'yaml';
import { ConfigError, parsePurifyConfig, type PurifyConfig } from '../schemas/purify';
import { UsageError } from './errors';

export interface LoadedConfig {
  file: string;
  /** what the workflow receives (after the `auto` substitution; the workflow validates it again) */
  raw: Record<string, unknown>;
  parsed: PurifyConfig;
  /** one line saying which data set `format: auto` chose, if it was used */
  dataChoice?: string;
}

/** Reads FILE as JSON (.json) or YAML (anything else; YAML also reads JSON). */
export function readConfigFile(file: string): unknown {
  if (!existsSync(file)) throw new UsageError(`config file not found: ${file}`);
  if (statSync(file).isDirectory()) throw new UsageError(`config file ${file} is a directory, expected a .yaml or .json file`);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new UsageError(`cannot read config file ${file}: ${(err as Error).message}`);
  }
  if (text.trim() === '') throw new UsageError(`config file ${file} is empty`);
  if (path.extname(file).toLowerCase() === '.json') {
    try {
      return JSON.parse(text);
    } catch (err) {
      throw new UsageError(`config file ${file} is not valid JSON: ${(err as Error).message}`);
    }
  }
  const doc = parseDocument(text, { prettyErrors: true });
  if (doc.errors.length) {
    throw new UsageError(`config file ${file} is not valid YAML:\n  ${doc.errors.map((e) => e.message.split('\n')[0]).join('\n  ')}`);
  }
  return doc.toJS();
}

/** The folder named by NTML_CIFAR10_DIR, if it holds the CIFAR-10 binary batches. */
export function cifar10DirFromEnv(env: NodeJS.ProcessEnv = process.env): { dir?: string; why: string } {
  const value = env.NTML_CIFAR10_DIR?.trim();
  if (!value) return { why: 'NTML_CIFAR10_DIR is not set' };
  const dir = path.resolve(value);
  if (!existsSync(path.join(dir, 'data_batch_1.bin'))) return { why: `NTML_CIFAR10_DIR=${value} has no data_batch_1.bin` };
  return { dir, why: `NTML_CIFAR10_DIR=${value}` };
}

/**
 * `data: {format: auto[, trainSubset: N | all]}` -> CIFAR-10 from NTML_CIFAR10_DIR when it is there
 * (default subset 2000 images), else synthetic data. `data: {format: gtsrb}` without a path takes
 * NTML_GTSRB_DIR. Other configs are returned unchanged.
 */
export function substituteAutoData(
  raw: Record<string, unknown>,
  env: NodeJS.ProcessEnv = process.env,
  source = 'config',
): { raw: Record<string, unknown>; choice?: string } {
  const data = raw.data as Record<string, unknown> | undefined;
  if (data && typeof data === 'object' && data.format === 'gtsrb' && data.path === undefined) {
    // like NTML_CIFAR10_DIR: a spec names the data set, each machine says where its copy is
    const dir = env.NTML_GTSRB_DIR?.trim();
    if (!dir) {
      const issues = ['data.path: required for format "gtsrb" (or set NTML_GTSRB_DIR to the GTSRB folder)'];
      throw new ConfigError(`${source} is invalid:\n  ${issues[0]}`, issues);
    }
    return { raw: { ...raw, data: { ...data, path: path.resolve(dir) } }, choice: `GTSRB from NTML_GTSRB_DIR=${dir}` };
  }
  if (!data || typeof data !== 'object' || data.format !== 'auto') return { raw };
  const extra = Object.keys(data).filter((k) => k !== 'format' && k !== 'trainSubset');
  if (extra.length) {
    const issues = extra.map((k) => `data.${k}: not allowed with format "auto" (it takes only trainSubset)`);
    throw new ConfigError(`${source} is invalid:\n  ${issues.join('\n  ')}`, issues);
  }
  const cifar = cifar10DirFromEnv(env);
  if (cifar.dir) {
    // 'all': the whole training split (the paper tier); a number: a class-stratified subset
    if (data.trainSubset === 'all') {
      return { raw: { ...raw, data: { format: 'cifar10', path: cifar.dir } }, choice: `CIFAR-10 from ${cifar.why} (all training images, full test set)` };
    }
    const trainSubset = data.trainSubset ?? 2000;
    return {
      raw: { ...raw, data: { format: 'cifar10', path: cifar.dir, trainSubset } },
      choice: `CIFAR-10 from ${cifar.why} (${trainSubset}-image training subset, full test set)`,
    };
  }
  return {
    raw: { ...raw, data: { format: 'synthetic' } },
    choice: `synthetic images (${cifar.why}; point it at a cifar-10-batches-bin folder to use CIFAR-10)`,
  };
}

export function loadPurifyConfig(file: string, env: NodeJS.ProcessEnv = process.env): LoadedConfig {
  const value = readConfigFile(file);
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new UsageError(`config file ${file} must hold a mapping of fields (mode, tier, data, attack, ...), got ${Array.isArray(value) ? 'a list' : JSON.stringify(value)}`);
  }
  const { raw, choice } = substituteAutoData(value as Record<string, unknown>, env, file);
  const parsed = parsePurifyConfig(raw, file);
  return { file, raw, parsed, dataChoice: choice };
}

/** One line describing the run, printed before it starts. */
export function describeConfig(c: PurifyConfig): string {
  const parts: string[] = [`${c.mode} mode`, `tier ${c.tier}`];
  if ('arch' in c.model) parts.push(`model ${c.model.arch}`);
  else parts.push(`model ${c.model.layersModel}`);
  if (c.mode === 'evaluation') {
    const attack = c.attack as { name?: string; target?: unknown; rate?: number } | undefined;
    if (attack?.name) parts.push(`attack ${attack.name}${attack.rate !== undefined ? ` (rate ${attack.rate})` : ''}`);
    if (c.data) parts.push(`data ${c.data.format}${'path' in c.data && c.data.path ? ` (${c.data.path})` : ''}`);
  } else {
    parts.push(`training set ${c.trainingSet?.format}`);
  }
  parts.push(`clean budget ${typeof c.cleanBudget === 'number' ? c.cleanBudget : `${c.cleanBudget.fraction * 100}%`}`);
  parts.push(`seed ${c.seed}`);
  return parts.join(', ');
}

/**
 * The config's local inputs that are not there, one `field: problem` line each. Run by the CLI
 * before anything starts when its own workers read them (embedded or local stack); a remote
 * server's workers resolve paths on their machines, so there it is not called. s3:// locations
 * are left to the workers (reading them needs the store's credentials and a round trip).
 */
export function missingLocalInputs(c: PurifyConfig, cwd = process.cwd()): string[] {
  const issues: string[] = [];
  const check = (field: string, location: string | undefined, kind: 'file' | 'folder') => {
    if (location === undefined || location.startsWith('s3://')) return;
    let p: string;
    try {
      p = path.resolve(cwd, location.startsWith('file:') ? fileURLToPath(location) : location);
    } catch {
      return; // a malformed URI is the schema's to report
    }
    if (!existsSync(p)) issues.push(`${field}: no such ${kind} ${location}${path.isAbsolute(location) || location.startsWith('file:') ? '' : ` (relative to ${cwd})`}`);
    else if (statSync(p).isDirectory() !== (kind === 'folder')) issues.push(`${field}: ${location} is ${kind === 'folder' ? 'a file' : 'a folder'}, expected a ${kind}`);
  };
  const data = c.data;
  if (data && 'path' in data) check('data.path', data.path, 'folder');
  if (data?.format === 'imageFolder') {
    for (const split of ['train', 'test'] as const) {
      check(`data.${split}.dir`, data[split].dir, 'folder');
      check(`data.${split}.labels`, data[split].labels, 'file');
    }
  }
  for (const field of ['trainingSet', 'cleanSet', 'testSet'] as const) {
    const f = c[field];
    if (!f) continue;
    if (f.format === 'idx') {
      check(`${field}.images`, f.images, 'file');
      check(`${field}.labels`, f.labels, 'file');
    } else if (f.format === 'imageFolder') {
      check(`${field}.dir`, f.dir, 'folder');
      check(`${field}.labels`, f.labels, 'file');
    } else check(`${field}.location`, f.location, 'file');
  }
  if ('layersModel' in c.model) check('model.layersModel', c.model.layersModel, 'file');
  if (c.standardModel) check('standardModel.layersModel', c.standardModel.layersModel, 'file');
  return issues;
}
