/**
 * The ntml command line, run as a child process (`node bin/ntml ...`): help texts, usage errors
 * and config validation, which must all answer before any server starts. No purification runs
 * here (the end-to-end run through the CLI has its own test).
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { WorkflowFailedError } from '@temporalio/client';
import { ActivityFailure, ApplicationFailure } from '@temporalio/common';
import { loadPurifyConfig, substituteAutoData } from '../cli/config';
import { failureMessage } from '../cli/errors';
import { repoRoot, runNtml, type CommandRun } from './support/processes';


const ntml = (args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<CommandRun> => runNtml(args, { ...opts, timeout: 30_000 });

const noStackTrace = (r: CommandRun) => assert.doesNotMatch(r.stderr, /\n\s+at .+\(.*:\d+:\d+\)/, `stack trace in:\n${r.stderr}`);

describe('ntml --help', () => {
  it('lists every command', async () => {
    const r = await ntml(['--help']);
    assert.equal(r.code, 0, r.stderr);
    for (const c of ['purify --config', 'purify status', 'purify attach', 'purify cancel', 'stack start', 'stack stop', 'stack status']) {
      assert.match(r.stdout, new RegExp(`ntml ${c}`), `"${c}" missing from:\n${r.stdout}`);
    }
    assert.equal((await ntml([])).code, 0, 'no arguments prints the help');
  });

  it('lists the subcommands of each command group', async () => {
    for (const [group, subs] of [['stack', ['start', 'stop', 'status']], ['sweep', ['start', 'resume', 'status', 'cancel', 'report']], ['store', ['gc']]] as const) {
      const r = await ntml([group, '--help']);
      assert.equal(r.code, 0, `${group} --help: ${r.stderr}`);
      for (const sub of subs) assert.match(r.stdout, new RegExp(`ntml ${group} ${sub} `), `${group} --help lacks ${sub}:\n${r.stdout}`);
    }
  });

  it('documents the options of each command', async () => {
    const expected: Array<[string[], string[]]> = [
      [['purify'], ['--config', '--address', '--namespace', '--local', '--id', '--detach', '--out']],
      [['purify', 'status'], ['--address', '--namespace', 'ID']],
      [['purify', 'attach'], ['--address', '--namespace', '--out', 'ID']],
      [['purify', 'cancel'], ['--address', '--namespace', 'ID']],
      [['stack', 'start'], ['--dir', '--ui-port']],
      [['stack', 'stop'], ['--dir']],
      [['stack', 'status'], ['--dir', '--json']],
    ];
    for (const [command, options] of expected) {
      const r = await ntml([...command, '--help']);
      assert.equal(r.code, 0, `${command.join(' ')} --help: ${r.stderr}`);
      assert.match(r.stdout, new RegExp(`usage: ntml ${command.join(' ')}`));
      for (const o of options) assert.ok(r.stdout.includes(o), `${command.join(' ')} --help lacks ${o}:\n${r.stdout}`);
    }
  });

  it('rejects unknown commands, subcommands and options with usage and exit code 2', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['frobnicate'], /unknown command "frobnicate"/],
      [['purify', 'explode'], /unknown purify subcommand "explode"/],
      [['stack', 'restart'], /unknown stack subcommand "restart"/],
      [['sweep', 'pause'], /unknown sweep subcommand "pause"/],
      [['sweep'], /missing sweep subcommand/],
      [['store'], /missing store subcommand/],
      [['purify', '--config', 'x.yaml', '--bogus'], /unknown option --bogus/],
      [['purify', 'status'], /missing ID/],
      [['purify', 'status', 'a', 'b'], /unexpected argument "b"/],
      [['purify', '--config'], /--config needs a value/],
      [['stack', 'start', '--ui-port', 'abc'], /--ui-port needs a port number/],
    ];
    for (const [args, message] of cases) {
      const r = await ntml(args);
      assert.equal(r.code, 2, `${args.join(' ')}: exit ${r.code}\n${r.stderr}`);
      assert.match(r.stderr, message);
      assert.match(r.stderr, /usage: ntml/, `${args.join(' ')} prints no usage:\n${r.stderr}`);
      noStackTrace(r);
    }
  });
});

describe('ntml purify --config: validation before anything starts', () => {
  let cwd: string;
  before(() => {
    cwd = mkdtempSync(path.join(os.tmpdir(), 'ntml-cli-'));
  });
  after(() => rmSync(cwd, { recursive: true, force: true }));

  const base = 'mode: evaluation\ntier: ci\ndata: {format: synthetic}\n';
  const bad: Array<{ name: string; yaml: string; field: RegExp }> = [
    { name: 'unknown field', yaml: `${base}attack: {name: badnets}\nbogusField: 1\n`, field: /bogusField/ },
    { name: 'unknown attack', yaml: `${base}attack: {name: nosuch}\n`, field: /attack\.name/ },
    { name: 'rate out of range', yaml: `${base}attack: {name: badnets, rate: 2}\n`, field: /attack\.rate/ },
    { name: 'several problems at once', yaml: 'mode: evaluation\ntier: gpu\ncleanBudget: -3\nattack: {name: badnets}\n', field: /tier[\s\S]*cleanBudget|cleanBudget[\s\S]*tier/ },
    { name: 'auto data with a stray field', yaml: 'data: {format: auto, trainSize: 50}\nattack: {name: badnets}\n', field: /data\.trainSize/ },
  ];
  for (const c of bad) {
    it(`${c.name}: exit 2, names the field, starts no server`, async () => {
      const file = path.join(cwd, `${c.name.replace(/\W+/g, '-')}.yaml`);
      writeFileSync(file, c.yaml);
      // with a Temporal address in the environment too: validation still comes first
      const r = await ntml(['purify', '--config', file], { cwd, env: { ...process.env, NTML_TEMPORAL_ADDRESS: '127.0.0.1:1' } });
      assert.equal(r.code, 2, `exit ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
      assert.match(r.stderr, c.field);
      assert.match(r.stderr, /is invalid/);
      noStackTrace(r);
      assert.equal(existsSync(path.join(cwd, '.ntml')), false, '.ntml was created: something started');
      assert.equal(existsSync(path.join(cwd, 'runs')), false);
    });
  }

  it('JSON configs are validated the same way', async () => {
    const file = path.join(cwd, 'bad.json');
    writeFileSync(file, JSON.stringify({ data: { format: 'synthetic' }, attack: { name: 'badnets', rate: 2 } }));
    const r = await ntml(['purify', '--config', file], { cwd });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /attack\.rate/);
    assert.equal(existsSync(path.join(cwd, '.ntml')), false);
  });

  it('a missing, empty or unparsable config file gives a clear error naming the file', async () => {
    const missing = await ntml(['purify', '--config', 'no-such-config.yaml'], { cwd });
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /config file not found: no-such-config\.yaml/);
    noStackTrace(missing);

    writeFileSync(path.join(cwd, 'empty.yaml'), '\n');
    const empty = await ntml(['purify', '--config', 'empty.yaml'], { cwd });
    assert.equal(empty.code, 2);
    assert.match(empty.stderr, /empty\.yaml is empty/);

    writeFileSync(path.join(cwd, 'broken.yaml'), 'data: [unclosed\n');
    const broken = await ntml(['purify', '--config', 'broken.yaml'], { cwd });
    assert.equal(broken.code, 2);
    assert.match(broken.stderr, /broken\.yaml is not valid YAML/);

    writeFileSync(path.join(cwd, 'broken.json'), '{"data":');
    const brokenJson = await ntml(['purify', '--config', 'broken.json'], { cwd });
    assert.equal(brokenJson.code, 2);
    assert.match(brokenJson.stderr, /broken\.json is not valid JSON/);

    const noConfig = await ntml(['purify'], { cwd });
    assert.equal(noConfig.code, 2);
    assert.match(noConfig.stderr, /missing --config FILE/);
    assert.equal(existsSync(path.join(cwd, '.ntml')), false);
  });

  it('refuses --detach without a server of its own and --local with --address', async () => {
    const env = { ...process.env };
    delete env.NTML_TEMPORAL_ADDRESS;
    const demo = path.join(repoRoot, 'examples', 'demo.yaml');
    const detach = await ntml(['purify', '--config', demo, '--detach'], { cwd, env });
    assert.equal(detach.code, 2);
    assert.match(detach.stderr, /--detach needs a Temporal server/);
    const both = await ntml(['purify', '--config', demo, '--local', '--address', '127.0.0.1:7233'], { cwd, env });
    assert.equal(both.code, 2);
    assert.match(both.stderr, /--local and --address/);
    assert.equal(existsSync(path.join(cwd, '.ntml')), false);
  });

  it('status without any server to ask says how to get one', async () => {
    const env = { ...process.env };
    delete env.NTML_TEMPORAL_ADDRESS;
    const r = await ntml(['purify', 'status', 'some-run'], { cwd, env });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /no Temporal server to ask/);
    assert.match(r.stderr, /ntml stack start/);
  });
});

describe('example configs', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'ntml-cifar-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('examples/demo.yaml: synthetic data without NTML_CIFAR10_DIR, CIFAR-10 with it', () => {
    const demo = path.join(repoRoot, 'examples', 'demo.yaml');
    const synthetic = loadPurifyConfig(demo, {});
    assert.equal(synthetic.parsed.data?.format, 'synthetic');
    assert.equal(synthetic.parsed.mode, 'evaluation');
    assert.equal(synthetic.parsed.tier, 'ci');
    assert.equal(synthetic.parsed.seed, 1);
    assert.equal(synthetic.parsed.cleanBudget, 100);
    assert.equal((synthetic.parsed.attack as { name: string }).name, 'badnets');
    assert.match(synthetic.dataChoice ?? '', /synthetic/);

    const notThere = loadPurifyConfig(demo, { NTML_CIFAR10_DIR: dir });
    assert.equal(notThere.parsed.data?.format, 'synthetic', 'a folder without data_batch_1.bin is not used');
    assert.match(notThere.dataChoice ?? '', /no data_batch_1\.bin/);

    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, 'data_batch_1.bin'), '');
    const cifar = loadPurifyConfig(demo, { NTML_CIFAR10_DIR: dir });
    assert.deepEqual(cifar.raw.data, { format: 'cifar10', path: path.resolve(dir), trainSubset: 2000 });
    assert.equal(cifar.parsed.tier, 'ci');
    assert.match(cifar.dataChoice ?? '', /CIFAR-10/);
  });

  it('data: {format: auto} keeps an explicit trainSubset and leaves other configs alone', () => {
    writeFileSync(path.join(dir, 'data_batch_1.bin'), '');
    const r = substituteAutoData({ data: { format: 'auto', trainSubset: 500 } }, { NTML_CIFAR10_DIR: dir });
    assert.deepEqual(r.raw.data, { format: 'cifar10', path: path.resolve(dir), trainSubset: 500 });
    const all = substituteAutoData({ data: { format: 'auto', trainSubset: 'all' } }, { NTML_CIFAR10_DIR: dir });
    assert.deepEqual(all.raw.data, { format: 'cifar10', path: path.resolve(dir) }, 'all: no subset');
    assert.match(all.choice ?? '', /all training images/);
    const gtsrb = substituteAutoData({ data: { format: 'gtsrb', size: 32 } }, { NTML_GTSRB_DIR: dir });
    assert.deepEqual(gtsrb.raw.data, { format: 'gtsrb', size: 32, path: path.resolve(dir) });
    assert.throws(() => substituteAutoData({ data: { format: 'gtsrb' } }, {}, 'spec.yaml'), /spec\.yaml is invalid:\n  data\.path: required for format "gtsrb" \(or set NTML_GTSRB_DIR/);
    const given = { data: { format: 'gtsrb', path: '/elsewhere' } };
    assert.equal(substituteAutoData(given, { NTML_GTSRB_DIR: dir }).raw, given, 'an explicit path wins');
    const same = { data: { format: 'synthetic' } };
    assert.equal(substituteAutoData(same, { NTML_CIFAR10_DIR: dir }).raw, same);
  });

  it('examples/protection.yaml is a valid protection-mode config', () => {
    const c = loadPurifyConfig(path.join(repoRoot, 'examples', 'protection.yaml'), {});
    assert.equal(c.parsed.mode, 'protection');
    assert.equal(c.parsed.trainingSet?.format, 'ntml');
    assert.equal(c.parsed.cleanSet?.format, 'ntml');
    assert.ok(c.parsed.standardModel);
  });
});

describe('failure messages', () => {
  it('a failed run reads as one line: the stage and the innermost message with its type', () => {
    const app = ApplicationFailure.create({ message: '/data/cifar/data_batch_1.bin: file not found', type: 'DatasetError', nonRetryable: true });
    const activity = new ActivityFailure('Activity task failed', 'prepareData', '1', 0 as never, 'worker', app);
    const err = new WorkflowFailedError('Workflow execution failed', activity, 0 as never);
    assert.equal(failureMessage(err), 'stage prepareData: DatasetError: /data/cifar/data_batch_1.bin: file not found');

    const invalid = ApplicationFailure.create({ message: 'invalid purify config:\n  attack.rate: Too big', type: 'InvalidConfig', nonRetryable: true });
    assert.equal(failureMessage(new WorkflowFailedError('Workflow execution failed', invalid, 0 as never)), 'InvalidConfig: invalid purify config:\n  attack.rate: Too big');
  });
});
