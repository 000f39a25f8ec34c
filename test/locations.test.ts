/**
 * Every location a user writes (purify config, sweep spec, audit request, NTML_STORE) is checked
 * before any work starts, each refusal naming its field; `--cron` likewise. The last tests run
 * the real CLI: `s3://ntml/../x` (once retried for 19 s into a bare "Bad Request") now ends the
 * process at once with exit 2 and the field's name.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ConfigError, parsePurifyConfig } from '../schemas/purify';
import { parseSweepSpec, expandSweep } from '../schemas/sweep';
import { parseAuditRequest } from '../schemas/audit';
import { fileLocation, folderLocation, localPath, locationProblem } from '../schemas/location';
import { parseArtifactUri, storeLocationProblem } from '../store/uri';
import { StoreConfigError } from '../store/errors';
import { cronProblem } from '../cli/cronExpression';
import { missingLocalInputs } from '../cli/config';
import { repoRoot, runNtml, type CommandRun } from './support/processes';


const protection = {
  mode: 'protection',
  trainingSet: { format: 'ntml', location: 'data/train.ntds' },
  cleanSet: { format: 'ntml', location: 's3://ntml-data/clean/clean.ntds' },
};

function issuesOf(f: () => unknown): string[] {
  try {
    f();
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err));
    return err.issues;
  }
  assert.fail('accepted');
}

/** The single issue that names `field`, with its message. */
function issueFor(issues: string[], field: string): string {
  const mine = issues.filter((i) => i.startsWith(`${field}: `) || i.includes(`: ${field}: `));
  assert.equal(mine.length, 1, `one issue for ${field} in:\n${issues.join('\n')}`);
  return mine[0];
}

describe('location rules', () => {
  const bad: Array<[string, RegExp]> = [
    ['s3://ntml/../x', /s3 key must not contain '\.\.' segments/],
    ['s3://ntml/a/./x', /s3 key must not contain '\.' segments/],
    ['s3://ntml/a//x', /empty segments/],
    ['s3://ntml/dir/', /empty segments/],
    ['s3://ntml', /names no object/],
    ['s3://ntml/', /names no object/],
    ['s3:///key', /bucket name is empty/],
    ['s3://Bad_Bucket/key', /invalid S3 bucket name "Bad_Bucket"/],
    ['s3://a..b/key', /invalid S3 bucket name/],
    ['s3://192.168.1.1/key', /invalid S3 bucket name/],
    ['s3:/ntml/key', /not a well-formed URI/],
    ['s3:ntml/key', /not a well-formed URI/],
    ['http://example.com/x.ntds', /unsupported scheme "http:\/\/"/],
    ['gs://bucket/x', /unsupported scheme "gs:\/\/"/],
    ['file://host/x', /file:\/\/\/absolute\/path/],
    ['file:///data/../etc/passwd', /must not contain '\.' or '\.\.' segments/],
    ['file:///data/%2e%2e/etc', /must not contain '\.' or '\.\.' segments/],
    ['file:///data/x?y', /query or fragment/],
    [' data/x.ntds', /white space/],
    ['data/\u0000x', /control characters/],
  ];
  it('refuses each malformed file location with the reason', () => {
    for (const [value, reason] of bad) {
      const problem = locationProblem(value, { s3: true, fileUri: true, what: 'a file location' });
      assert.ok(problem, `${JSON.stringify(value)} accepted`);
      assert.match(problem, reason, value);
    }
  });
  it('accepts the locations the workers read', () => {
    for (const good of ['data/train.ntds', '../shared/train.ntds', '/abs/train.ntds', 's3://ntml/x', 's3://ntml-data.eu/a/b/c.ntds', 's3://b/k', 'file:///abs/x.ntds', 'file://localhost/abs/a%20b.ntds']) {
      assert.ok(fileLocation.safeParse(good).success, good);
    }
  });
  it('keeps folders and outputs local', () => {
    assert.match(folderLocation.safeParse('s3://ntml/images').error!.issues[0].message, /local folder.*ntml data pack/);
    assert.ok(folderLocation.safeParse('file:///data/images').success);
    assert.match(localPath.safeParse('file:///data/out').error!.issues[0].message, /must be a local path, not a file:\/\/ URI/);
    assert.ok(localPath.safeParse('runs/out').success);
  });
});

describe('every location field of the purify config', () => {
  const cases: Array<[string, Record<string, unknown>]> = [
    ['trainingSet.location', { ...protection, trainingSet: { format: 'ntml', location: 's3://ntml/../x' } }],
    ['cleanSet.location', { ...protection, cleanSet: { format: 'cifar10Batch', location: 'ftp://x/y' } }],
    ['testSet.images', { ...protection, testSet: { format: 'idx', images: 's3://ntml/a//i.idx', labels: 'l.idx' } }],
    ['testSet.labels', { ...protection, testSet: { format: 'idx', images: 'i.idx', labels: 's3://NTML/l.idx' } }],
    ['testSet.dir', { ...protection, testSet: { format: 'imageFolder', dir: 's3://ntml/images' } }],
    ['testSet.labels', { ...protection, testSet: { format: 'imageFolder', dir: 'images', labels: 'file:///a/../l.csv' } }],
    ['model.layersModel', { ...protection, model: { layersModel: 's3://ntml/../model.json' } }],
    ['standardModel.layersModel', { ...protection, standardModel: { layersModel: 'https://x/model.json' } }],
    ['export.dir', { ...protection, export: { dir: 's3://ntml/out' } }],
    ['data.path', { attack: { name: 'badnets' }, data: { format: 'cifar10', path: 's3://ntml/cifar' } }],
    ['data.path', { attack: { name: 'badnets' }, data: { format: 'gtsrb', path: 'file:///gtsrb' } }],
    ['data.train.dir', { attack: { name: 'badnets' }, data: { format: 'imageFolder', train: { dir: 's3://ntml/train' }, test: { dir: 'test' } } }],
    ['data.test.labels', { attack: { name: 'badnets' }, data: { format: 'imageFolder', train: { dir: 'train' }, test: { dir: 'test', labels: 'http://x/l.csv' } } }],
  ];
  it('refuses a bad location in each, naming the field', () => {
    for (const [field, raw] of cases) issueFor(issuesOf(() => parsePurifyConfig(raw)), field);
  });
  it('words the issue of the report exactly', () => {
    assert.deepEqual(issuesOf(() => parsePurifyConfig(cases[0][1])), ["trainingSet.location: s3 key must not contain '..' segments"]);
  });
  it('still accepts good locations', () => {
    const c = parsePurifyConfig({
      ...protection,
      testSet: { format: 'imageFolder', dir: 'file:///data/test', labels: 's3://ntml/test/labels.csv' },
      model: { layersModel: 's3://models/arch/model.json' },
      standardModel: { layersModel: 'file:///models/std/model.json' },
      export: { dir: '../exported' },
    });
    assert.equal(c.cleanSet!.format === 'ntml' && c.cleanSet!.location, 's3://ntml-data/clean/clean.ntds');
  });
});

describe('sweep specs and audit requests', () => {
  it('a sweep cell with a bad location is refused, naming the cell and the field', () => {
    const spec = parseSweepSpec({ name: 'loc', base: { ...protection, trainingSet: { format: 'ntml', location: 's3://ntml/../x' } }, grid: {} });
    const issues = issuesOf(() => expandSweep(spec));
    assert.match(issueFor(issues, 'trainingSet.location'), /^cell .*: trainingSet\.location: s3 key must not contain '\.\.' segments$/);
  });
  const request = { modelId: 'm', model: { layersModel: 'models/model.json' }, referenceSet: { format: 'ntml', location: 'ref.ntds' } };
  it('an audit request names each bad location', () => {
    issueFor(issuesOf(() => parseAuditRequest({ ...request, model: { layersModel: 's3://ntml/../model.json' } })), 'model.layersModel');
    issueFor(issuesOf(() => parseAuditRequest({ ...request, referenceSet: { format: 'ntml', location: 's3://a_b/ref.ntds' } })), 'referenceSet.location');
    const artifact = { uri: 's3://ntml/cas/../x', sha256: 'a'.repeat(64), bytes: 1 };
    issueFor(issuesOf(() => parseAuditRequest({ ...request, model: { artifact } })), 'model.artifact.uri');
    const purifyOnBackdoored = { trainingSet: { format: 'ntml', location: 'ftp://x/t.ntds' }, cleanSet: { format: 'ntml', location: 'c.ntds' } };
    issueFor(issuesOf(() => parseAuditRequest({ ...request, policy: { purifyOnBackdoored } })), 'policy.purifyOnBackdoored.trainingSet.location');
    // a bad location reports that, not also "expected the model.json"
    const one = issuesOf(() => parseAuditRequest({ ...request, model: { layersModel: 'gs://b/model.onnx' } }));
    assert.equal(one.length, 1, one.join('\n'));
    assert.ok(parseAuditRequest({ ...request, model: { layersModel: 's3://ntml/deployed/model.json' } }));
  });
});

describe('store locations and artifact URIs', () => {
  it('NTML_STORE values', () => {
    for (const good of ['s3://ntml', 's3://ntml/', 's3://ntml/team/a', 'file:///var/ntml', '.ntml/store', '../store']) assert.equal(storeLocationProblem(good), undefined, good);
    const bad: Array<[string, RegExp]> = [
      ['s3://ntml/../x', /'\.\.' segments/],
      ['s3://ntml/a//b', /empty segments/],
      ['s3://Bad_Bucket', /invalid S3 bucket name/],
      ['s3://ab/p', /shorter than 3/],
      ['s3://ntml/a b', /may only contain/],
      ['http://x/y', /unsupported store location/],
      ['s3:ntml', /unsupported store location/],
    ];
    for (const [value, reason] of bad) assert.match(storeLocationProblem(value) ?? 'accepted', reason, value);
  });
  it('parseArtifactUri refuses ".." keys and malformed buckets before any request', () => {
    for (const uri of ['s3://ntml/../x', 's3://ntml/a/./x', 's3://Bad_Bucket/x']) assert.throws(() => parseArtifactUri(uri), StoreConfigError, uri);
    assert.deepEqual(parseArtifactUri('s3://ntml/a/x.bin'), { scheme: 's3', bucket: 'ntml', key: 'a/x.bin' });
  });
});

describe('cron expressions', () => {
  it('accepts what the Temporal server takes', () => {
    for (const e of ['0 3 * * *', '*/15 * * * *', '0 9 * jan,jul mon-fri', '0 3 ? * *', '30 0 3 * * *', '0 0 3 * * * 2030', '@daily', '@every 1h30m', 'CRON_TZ=Europe/Berlin 0 3 * * *']) {
      assert.equal(cronProblem(e), undefined, e);
    }
  });
  it('names the field and the value that is wrong', () => {
    const bad: Array<[string, RegExp]> = [
      ['', /empty/],
      ['3am', /needs 5 fields/],
      ['0 3 * *', /needs 5 fields.*got 4/],
      ['99 3 * * *', /minute 99 is outside 0-59/],
      ['0 24 * * *', /hour 24 is outside 0-23/],
      ['0 3 32 * *', /day-of-month 32/],
      ['0 3 * 13 *', /month 13/],
      ['0 3 * * 8', /day-of-week 8/],
      ['0 3 * * funday', /day-of-week "funday" is not a number/],
      ['*/0 * * * *', /step "0"/],
      ['1-2-3 * * * *', /not N or N-M/],
      ['? 3 * * *', /"\?" is allowed only/],
      ['@fortnightly', /unknown descriptor/],
      ['@every soon', /@every takes a duration/],
    ];
    for (const [e, reason] of bad) assert.match(cronProblem(e) ?? 'accepted', reason, JSON.stringify(e));
  });
});

describe('local inputs before the run starts', () => {
  it('names each missing file or folder and accepts those that are there', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ntml-locations-'));
    try {
      await fs.writeFile(path.join(dir, 'train.ntds'), 'x');
      await fs.mkdir(path.join(dir, 'model'));
      const c = parsePurifyConfig({
        ...protection,
        trainingSet: { format: 'ntml', location: 'train.ntds' },
        cleanSet: { format: 'ntml', location: `file://${dir}/clean.ntds` },
        testSet: { format: 'ntml', location: 's3://ntml/test.ntds' },
        model: { layersModel: 'model' },
      });
      const issues = missingLocalInputs(c, dir);
      assert.deepEqual(issues.map((i) => i.split(':')[0]), ['cleanSet.location', 'model.layersModel'], issues.join('\n'));
      assert.match(issueFor(issues, 'cleanSet.location'), /no such file/);
      assert.match(issueFor(issues, 'model.layersModel'), /is a folder, expected a file/);
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});

const ntml = (args: string[], env: NodeJS.ProcessEnv, cwd = repoRoot): Promise<CommandRun> => runNtml(args, { env, cwd });

describe('the CLI refuses bad locations before any work', () => {
  it('s3://ntml/../x: exit 2 within seconds, naming the field', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ntml-locations-cli-'));
    try {
      const file = path.join(dir, 'bad.yaml');
      await fs.writeFile(file, 'mode: protection\ntrainingSet: {format: ntml, location: "s3://ntml/../x"}\ncleanSet: {format: ntml, location: clean.ntds}\n');
      // both with the test stack's server (remote) and with none (embedded): the config fails first
      const { NTML_TEMPORAL_ADDRESS: _, ...local } = process.env;
      for (const env of [process.env, local]) {
        const r = await ntml(['purify', '--config', file], env);
        assert.equal(r.code, 2, r.stderr);
        assert.match(r.stderr, /trainingSet\.location: s3 key must not contain '\.\.' segments/);
        assert.doesNotMatch(r.stderr, /NTML_DEBUG|Bad Request|waiting/);
        assert.ok(r.seconds < 15, `took ${r.seconds} s`);
      }
      // a missing local file, read by this command's own workers: named before the stack starts
      const missing = path.join(dir, 'missing.yaml');
      await fs.writeFile(missing, 'mode: protection\ntrainingSet: {format: ntml, location: nowhere/train.ntds}\ncleanSet: {format: ntml, location: nowhere/clean.ntds}\n');
      const r = await ntml(['purify', '--config', missing], local, dir);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, /trainingSet\.location: no such file nowhere\/train\.ntds/);
      assert.match(r.stderr, /cleanSet\.location: no such file nowhere\/clean\.ntds/);
      assert.doesNotMatch(r.stderr, /stack up|starting/);
      // a sweep's cells likewise, once per input however many cells share it
      const sweep = path.join(dir, 'sweep.yaml');
      await fs.writeFile(sweep, 'name: loc\nbase: {mode: protection, trainingSet: {format: ntml, location: nowhere/t.ntds}, cleanSet: {format: ntml, location: s3://ntml/c.ntds}}\ngrid: {seed: [1, 2]}\n');
      const s = await ntml(['sweep', 'start', '--spec', sweep], local, dir);
      assert.equal(s.code, 2, s.stderr);
      assert.equal(s.stderr.match(/trainingSet\.location: no such file nowhere\/t\.ntds/g)?.length, 1, s.stderr);
      assert.doesNotMatch(s.stderr, /cleanSet|stack up|started on/);
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });

  it('a bad NTML_STORE or NTML_S3_ENDPOINT is a usage error naming the variable', async () => {
    for (const [name, value, reason] of [
      ['NTML_STORE', 's3://ntml/../x', /'\.\.' segments/],
      ['NTML_STORE', 'gs://bucket/x', /unsupported store location/],
      ['NTML_S3_ENDPOINT', 'localhost:9000', /http:\/\/ or https:\/\/ URL/],
    ] as const) {
      const r = await ntml(['purify', '--config', 'examples/demo.yaml'], { ...process.env, [name]: value });
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, new RegExp(`^ntml: ${name}=`, 'm'));
      assert.match(r.stderr, reason);
      assert.doesNotMatch(r.stderr, /NTML_DEBUG/);
    }
  });

  it('a bad --cron is a usage error before the server is asked', async () => {
    // no server at this address: reaching it would fail differently (and slowly)
    const env = { ...process.env, NTML_TEMPORAL_ADDRESS: '127.0.0.1:1' };
    const r = await ntml(['audit', 'schedule', 'create', '--request', 'examples/audit.yaml', '--cron', '0 25 * * *'], env);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /--cron "0 25 \* \* \*": hour 25 is outside 0-23/);
  });
});
