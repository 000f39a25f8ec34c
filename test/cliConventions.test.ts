/**
 * CLI conventions that need no server: --version, `ntml help TOPIC`, did-you-mean for commands
 * and options, the generated completion scripts (run through bash), and the telemetry exporter
 * switches with their one-line failure report.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { telemetryEndpoints } from '../telemetry/config';
import { exportFailureLine } from '../telemetry/setup';
import { NTML_BIN, embeddedEnv, repoRoot, runNtml } from './support/processes';


const ntml = (args: string[]) => runNtml(args, { timeout: 30_000 });

describe('ntml conventions', () => {
  it('--version and -V print the version of package.json', async () => {
    const { version } = JSON.parse(readFileSync(path.join(repoRoot, 'package.json'), 'utf8')) as { version: string };
    for (const flag of ['--version', '-V']) {
      const r = await ntml([flag]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.trim(), version);
    }
  });

  it('ntml help TOPIC prints the help of that command, at any depth', async () => {
    for (const topic of [['purify'], ['purify', 'status'], ['sweep', 'start'], ['audit', 'schedule', 'create']]) {
      const viaHelp = await ntml(['help', ...topic]);
      const viaFlag = await ntml([...topic, '--help']);
      assert.equal(viaHelp.code, 0, viaHelp.stderr);
      assert.match(viaHelp.stdout, new RegExp(`^usage: ntml ${topic.join(' ')}`));
      assert.equal(viaHelp.stdout, viaFlag.stdout, `ntml help ${topic.join(' ')}`);
    }
    const main = await ntml(['help']);
    assert.match(main.stdout, /^usage: ntml <command>/);
    const unknown = await ntml(['help', 'purfy']);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /unknown command "purfy"[\s\S]*did you mean purify\?/);
  });

  it('suggests the nearest command, subcommand or option for a misspelling (exit 2)', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['swep'], /unknown command "swep"[\s\S]*\(did you mean sweep\?\)/],
      [['stack', 'stat'], /unknown stack subcommand "stat"[\s\S]*\(did you mean (start|status)\?\)/],
      [['purify', '--confg', 'x.yaml'], /unknown option --confg for "ntml purify"\n\(did you mean --config\?\)/],
      [['sweep', 'start', '--namespac', 'x'], /unknown option --namespac[\s\S]*did you mean --namespace\?/],
      [['store', 'gc', '--dryrun'], /did you mean --dry-run\?/],
    ];
    for (const [args, message] of cases) {
      const r = await ntml(args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, message);
      assert.match(r.stderr, /usage: ntml/);
    }
  });

  it('help texts: a readable command column, each subcommand once, the file a command takes in its usage', async () => {
    const main = await ntml(['--help']);
    const rows = main.stdout.slice(main.stdout.indexOf('commands:')).split('\n').filter((l) => l.startsWith('  ntml '));
    for (const row of rows) assert.ok(row.indexOf('  ', 2) < 60, `the description starts past column 60: ${row}`);
    const purify = (await ntml(['purify', '--help'])).stdout;
    for (const sub of ['status', 'attach', 'cancel']) assert.equal(purify.match(new RegExp(`^ +ntml purify ${sub} ID`, 'gm'))?.length, 1, `purify ${sub} listed more than once`);
    assert.match((await ntml(['sweep', 'resume', 'demo-sweep'])).stderr, /usage: ntml sweep resume --spec FILE/);
  });

  it('--namespace is accepted by every command that talks to Temporal', async () => {
    for (const command of [['purify'], ['purify', 'status'], ['sweep', 'start'], ['sweep', 'status'], ['audit', 'run'], ['audit', 'schedule', 'list']]) {
      const r = await ntml([...command, '--help']);
      assert.ok(r.stdout.includes('--namespace'), `${command.join(' ')} --help lacks --namespace`);
    }
  });

  it('--stack-dir reaches every command that finds the local stack, and the message names that folder', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'ntml-nostack-'));
    try {
      for (const command of [['stack', 'env'], ['audit', 'schedule', 'list'], ['audit', 'schedule', 'unpause', 'x'], ['purify', 'status', 'x']]) {
        const r = await runNtml([...command, '--stack-dir', dir], { env: embeddedEnv(), timeout: 30_000 });
        assert.ok(r.code === 1 || r.code === 2, `${command.join(' ')}: exit ${r.code} ${r.stderr}`);
        assert.ok(r.stderr.includes(dir), `${command.join(' ')} does not say it looked in ${dir}: ${r.stderr}`);
      }
      for (const command of [['audit', 'history'], ['audit', 'schedule', 'create'], ['audit', 'schedule', 'backfill'], ['attack', 'preview'], ['stack', 'env']]) {
        assert.ok((await ntml([...command, '--help'])).stdout.includes('--stack-dir <DIR>'), `${command.join(' ')} --help lacks --stack-dir`);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("a command that loads TensorFlow prints none of the native library's start-up notices", () => {
    // stderr to a file opened for appending, as from a shell (`2>> file`; a terminal or a pipe
    // alike); a socket, which Node's own child_process uses, cannot be reopened and keeps the
    // notices, and so does a file written at a shared offset (cli/quiet.ts; next test)
    const dir = mkdtempSync(path.join(os.tmpdir(), 'ntml-stderr-'));
    try {
      const run = (args: string[]) => {
        const file = path.join(dir, 'stderr.txt');
        rmSync(file, { force: true });
        const fd = openSync(file, 'a');
        const r = spawnSync(process.execPath, [NTML_BIN, ...args], { cwd: repoRoot, encoding: 'utf8', stdio: ['ignore', 'pipe', fd], timeout: 60_000 });
        closeSync(fd);
        return { code: r.status, stdout: r.stdout, stderr: readFileSync(file, 'utf8') };
      };
      const r = run(['defense', 'list']);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /^ntml\s/m, 'TensorFlow-backed output came');
      assert.equal(r.stderr, '', 'no absl / oneDNN lines');
      // stderr is back after the load: a later error still reaches the user
      const bad = run(['attack', 'preview', '--attack', 'nosuch', '--out', path.join(dir, 'no.png')]);
      assert.equal(bad.code, 2);
      assert.equal(bad.stderr.trim(), 'ntml: attack config: name: unknown attack "nosuch"; known attacks: badnets, blended, inputaware, narcissus, sig, wanet');
      // audit digest reads the model with TensorFlow too (here a missing one: its error alone)
      const request = path.join(dir, 'audit.yaml');
      writeFileSync(request, 'modelId: m\nmodel: { layersModel: no-such/model.json }\nreferenceSet: { format: ntml, location: ref.ntds }\n');
      const digest = run(['audit', 'digest', '--request', request]);
      assert.equal(digest.code, 1);
      assert.equal(digest.stderr.trim(), `ntml: the deployed model no-such/model.json does not exist (no model.json there)`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('`ntml ... > log 2>&1` and `(ntml ...; echo) 2> log` in a script keep every line of the log', () => {
    // the log's offset is shared with stdout, or with the shell that writes after the command
    const dir = mkdtempSync(path.join(os.tmpdir(), 'ntml-log-'));
    try {
      const log = path.join(dir, 'log.txt');
      const ntmlCommand = `"${process.execPath}" "${NTML_BIN}" attack preview --attack nosuch --out "${path.join(dir, 'no.png')}"`;
      const runScript = (script: string, stdout: 'log' | 'ignore') => {
        const fd = openSync(log, 'w');
        const r = spawnSync('/bin/sh', ['-c', script], { cwd: repoRoot, stdio: ['ignore', stdout === 'log' ? fd : 'ignore', fd], timeout: 60_000 });
        closeSync(fd);
        assert.equal(r.status, 0);
        return readFileSync(log, 'utf8');
      };
      const error = /^ntml: attack config: name: unknown attack "nosuch"; known attacks: [a-z, ]+\nnext command\n$/m;
      assert.match(runScript(`${ntmlCommand}; echo next command`, 'log'), error);
      assert.match(runScript(`${ntmlCommand}; echo next command >&2`, 'ignore'), error);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('sweep validation names each field once and the tier the cells use', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'ntml-spec-'));
    try {
      const check = (grid: string, expected: string, not: RegExp) => {
        const file = path.join(dir, 'spec.yaml');
        writeFileSync(file, `name: x\nbase: {mode: evaluation, tier: ci, data: {format: synthetic}}\ngrid:\n  ${grid}\n`);
        const r = spawnSync(process.execPath, [NTML_BIN, 'sweep', 'start', '--spec', file], { cwd: dir, encoding: 'utf8', timeout: 30_000 });
        assert.equal(r.status, 2, r.stderr);
        assert.ok(r.stderr.includes(expected), r.stderr);
        assert.doesNotMatch(r.stderr, not);
      };
      check('attack: []', 'grid.attack: the grid axis is empty', /grid\.attack: grid\.attack/);
      check('attack: [{name: badnets, foo: 1}]', 'cell badnets/ntml/ci-tier model/100/seed 0: attack: Unrecognized key: "foo"', /tier default/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('value options refuse a repeat and a missing value, naming the option', async () => {
    const twice = await ntml(['purify', 'status', 'x', '--address', 'a:1', '--address', 'b:2']);
    assert.equal(twice.code, 2);
    assert.match(twice.stderr, /--address given more than once/);
    const swallowed = await ntml(['purify', '--config', '--detach']);
    assert.equal(swallowed.code, 2);
    assert.match(swallowed.stderr, /--config needs a value \(FILE\)/);
  });
});

describe('ntml completion', () => {
  /** The words bash would offer after typing `line` (the last word is being completed). */
  function complete(script: string, line: string): string[] {
    const words = line.split(' ');
    const program = `${script}
COMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')})
COMP_CWORD=${words.length - 1}
_ntml
printf '%s\\n' "\${COMPREPLY[@]}"`;
    const r = spawnSync('bash', ['-c', program], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    return r.stdout.split('\n').filter(Boolean).sort();
  }

  it('the bash script completes commands, subcommands and options of the tree', async () => {
    const r = await ntml(['completion', 'bash']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /complete -o default -F _ntml ntml/);
    assert.deepEqual(complete(r.stdout, 'ntml sw'), ['sweep']);
    assert.deepEqual(complete(r.stdout, 'ntml sweep st'), ['start', 'status']);
    assert.deepEqual(complete(r.stdout, 'ntml purify --con'), ['--config']);
    assert.deepEqual(complete(r.stdout, 'ntml audit schedule cr'), ['create']);
    assert.deepEqual(complete(r.stdout, 'ntml store gc --d'), ['--drop-checkpoints', '--dry-run']);
    // an option value in between does not lose the command
    assert.deepEqual(complete(r.stdout, 'ntml sweep start --spec x.yaml --na'), ['--namespace']);
  });

  it('zsh gets the same function through bashcompinit; other shells are a usage error', async () => {
    const zsh = await ntml(['completion', 'zsh']);
    assert.equal(zsh.code, 0);
    assert.match(zsh.stdout, /bashcompinit/);
    assert.match(zsh.stdout, /_ntml_words\(\)/);
    const fish = await ntml(['completion', 'fish']);
    assert.equal(fish.code, 2);
    assert.match(fish.stderr, /shell must be bash or zsh, got "fish"/);
  });
});

describe('telemetry exporters', () => {
  const base = { NTML_OTEL_ENDPOINT: 'http://127.0.0.1:4318' };

  it('OTEL_TRACES_EXPORTER / OTEL_METRICS_EXPORTER=none switch a signal off; both off is telemetry off', () => {
    assert.deepEqual(
      { t: telemetryEndpoints(base)?.exportTraces, m: telemetryEndpoints(base)?.exportMetrics },
      { t: true, m: true },
    );
    const jaeger = telemetryEndpoints({ ...base, OTEL_METRICS_EXPORTER: 'none' });
    assert.equal(jaeger?.exportTraces, true);
    assert.equal(jaeger?.exportMetrics, false);
    assert.equal(telemetryEndpoints({ ...base, OTEL_METRICS_EXPORTER: 'none', OTEL_TRACES_EXPORTER: 'none' }), undefined);
    assert.throws(() => telemetryEndpoints({ ...base, OTEL_TRACES_EXPORTER: 'zipkin' }), /OTEL_TRACES_EXPORTER must be otlp or none/);
  });

  it('a failed export is one line with the reason, and a metrics failure names the switch', () => {
    const err = Object.assign(new Error('Not Found'), { code: 404, data: '404 page not found\n' });
    err.stack = 'OTLPExporterError: Not Found\n    at IncomingMessage.<anonymous> (http-transport-utils.js:52:31)';
    const line = exportFailureLine('PeriodicExportingMetricReader: metrics export failed', [err]);
    assert.doesNotMatch(line, /\n/);
    assert.match(line, /^telemetry: PeriodicExportingMetricReader: metrics export failed: Not Found \(404\)/);
    assert.match(line, /OTEL_METRICS_EXPORTER=none/);
    assert.doesNotMatch(exportFailureLine('span export failed', [err]), /METRICS/);
  });
});
