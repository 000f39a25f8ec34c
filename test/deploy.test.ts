/**
 * The deployment files, validated without containers, GPUs or a cluster: every manifest
 * parses, every file a kustomization, patch or Dockerfile refers to exists, every variable the
 * manifests set is one the code reads, GPU workers are placed on GPU nodes with GPU requests,
 * training workers get more termination grace than their shutdown grace, and the variables
 * the code reads are documented. Also the worker settings the manifests rely on (slots).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { parseAllDocuments } from 'yaml';
import { visibleGpuCount, workerEnv, workerSlots } from '../workers/env';
import { logLevel } from '../workers/runtime';

const REPO = path.resolve(__dirname, '..', '..');
const DEPLOY = path.join(REPO, 'infra', 'deploy');
const K8S = path.join(DEPLOY, 'k8s');
const DOCKER = path.join(DEPLOY, 'docker');
/** the folders of the running code (what the images hold), as opposed to tests and benchmarks */
const SOURCE_DIRS = ['activities', 'cli', 'core', 'infra', 'schemas', 'store', 'telemetry', 'workers', 'workflows'];

function walk(dir: string, keep: (f: string) => boolean): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...walk(full, keep));
    else if (keep(full)) out.push(full);
  }
  return out.sort();
}

type Doc = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
const rel = (f: string) => path.relative(REPO, f);

const yamlFiles = walk(K8S, (f) => /\.ya?ml$/.test(f));
const docsByFile = new Map<string, Doc[]>(
  yamlFiles.map((f) => {
    const docs = parseAllDocuments(readFileSync(f, 'utf8'));
    for (const d of docs) if (d.errors.length) throw new Error(`${rel(f)}: ${d.errors.map((e) => e.message).join('; ')}`);
    return [f, docs.map((d) => d.toJS() as Doc).filter(Boolean)];
  }),
);
const kustomizations = yamlFiles.filter((f) => path.basename(f) === 'kustomization.yaml');
const allDocs = [...docsByFile.entries()].flatMap(([file, docs]) => docs.map((doc) => ({ file, doc })));
const podSpecs = allDocs.filter(({ doc }) => doc.kind === 'Deployment').map(({ file, doc }) => ({ file, doc, spec: doc.spec?.template?.spec ?? {} }));
const containers = podSpecs.flatMap(({ file, doc, spec }) => ((spec.containers ?? []) as Doc[]).map((c) => ({ file, doc, spec, c })));
/** files used as patches (partial Deployments that add env and volumes to every worker) */
const patchFiles = new Set(
  kustomizations.flatMap((f) => ((docsByFile.get(f)![0].patches ?? []) as Doc[]).map((p) => path.resolve(path.dirname(f), p.path))),
);
/** the containers of complete Deployments */
const workloads = containers.filter(({ file }) => !patchFiles.has(file));

/** Every source file of the running code, concatenated: what "the code reads" is checked against. */
const sourceText = SOURCE_DIRS.flatMap((d) => walk(path.join(REPO, d), (f) => f.endsWith('.ts'))).map((f) => readFileSync(f, 'utf8')).join('\n');

/** Read by libraries rather than our code, each with where that happens. */
const READ_BY_LIBRARIES: Record<string, string> = {
  // the OpenTelemetry resource detector telemetry/setup.ts installs (envDetectorSync)
  OTEL_RESOURCE_ATTRIBUTES: 'envDetectorSync',
};

function configMapKeys(): Map<string, string> {
  const keys = new Map<string, string>();
  for (const f of kustomizations) {
    for (const doc of docsByFile.get(f)!) {
      for (const gen of (doc.configMapGenerator ?? []) as Doc[]) {
        for (const lit of (gen.literals ?? []) as string[]) keys.set(lit.slice(0, lit.indexOf('=')), `${rel(f)}`);
      }
    }
  }
  return keys;
}

describe('Kubernetes manifests', () => {
  it('parse as YAML, and every kustomization refers only to files and folders that exist', () => {
    assert.ok(yamlFiles.length >= 15, `found ${yamlFiles.length} manifests`);
    const referenced = new Set<string>();
    for (const f of kustomizations) {
      const dir = path.dirname(f);
      const [k] = docsByFile.get(f)!;
      assert.ok(k.kind === 'Kustomization' || k.kind === 'Component', `${rel(f)}: kind ${k.kind}`);
      const entries: string[] = [...(k.resources ?? []), ...(k.components ?? []), ...((k.patches ?? []) as Doc[]).map((p) => p.path).filter(Boolean)];
      assert.ok(entries.length > 0 || k.configMapGenerator, `${rel(f)} refers to nothing`);
      for (const entry of entries) {
        const target = path.resolve(dir, entry);
        assert.ok(existsSync(target), `${rel(f)} refers to ${entry}, which does not exist`);
        if (statSync(target).isDirectory()) {
          assert.ok(existsSync(path.join(target, 'kustomization.yaml')), `${rel(f)}: ${entry} has no kustomization.yaml`);
          referenced.add(path.join(target, 'kustomization.yaml'));
        } else referenced.add(target);
      }
      for (const c of (k.components ?? []) as string[]) {
        assert.equal(docsByFile.get(path.resolve(dir, c, 'kustomization.yaml'))![0].kind, 'Component', `${rel(f)}: ${c} is not a Component`);
      }
    }
    // no manifest lies around unused (it would not be deployed, whatever it says)
    for (const f of yamlFiles) {
      if (!f.includes(`${path.sep}overlays${path.sep}`)) assert.ok(referenced.has(f), `${rel(f)} is not referenced by any kustomization`);
    }
  });

  it('components that patch every worker come after the training component in each overlay', () => {
    const overlays = kustomizations.filter((f) => f.includes(`${path.sep}overlays${path.sep}`));
    assert.equal(overlays.length, 3);
    for (const f of overlays) {
      const comps = (docsByFile.get(f)![0].components ?? []) as string[];
      const training = comps.findIndex((c) => /training-(cpu|gpu)$/.test(c));
      assert.ok(training >= 0, `${rel(f)} deploys no training workers`);
      for (const [i, c] of comps.entries()) {
        const patches = (docsByFile.get(path.resolve(path.dirname(f), c, 'kustomization.yaml'))![0].patches ?? []) as Doc[];
        if (patches.some((p) => p.target?.kind === 'Deployment')) assert.ok(i > training, `${rel(f)}: ${c} is listed before the training workers it must patch`);
      }
    }
  });

  it('set only environment variables the code reads', () => {
    const set = new Map<string, string>();
    for (const { file, c } of containers) {
      const env = (c.env ?? []) as Doc[];
      const values = env.map((e) => String(e.value ?? '')).join(' ');
      for (const e of env) {
        // a variable only other variables expand ($(POD_NAME)) is a manifest-internal helper
        if (e.valueFrom?.fieldRef && values.includes(`$(${e.name})`)) continue;
        set.set(e.name, rel(file));
      }
    }
    for (const [k, where] of configMapKeys()) set.set(k, where);
    assert.ok(set.size >= 15, `variables found: ${[...set.keys()].join(', ')}`);
    for (const [name, where] of set) {
      if (READ_BY_LIBRARIES[name]) {
        assert.ok(sourceText.includes(READ_BY_LIBRARIES[name]), `${name} (${where}) relies on ${READ_BY_LIBRARIES[name]}, which the code no longer uses`);
        continue;
      }
      assert.ok(new RegExp(`\\b${name}\\b`).test(sourceText), `${where} sets ${name}, which no source file reads`);
    }
  });

  it('point every *_FILE, certificate and key variable into a volume the same container mounts, from a Secret', () => {
    let checked = 0;
    for (const { file, spec, c } of containers) {
      const mounts: Doc[] = ((c.volumeMounts ?? []) as Doc[]).map((m) => ({ ...m, volume: ((spec.volumes ?? []) as Doc[]).find((v) => v.name === m.name) }));
      for (const e of (c.env ?? []) as Doc[]) {
        if (!/_FILE$|_TLS_(CERT|KEY|CA)$/.test(e.name)) continue;
        const mount = mounts.find((m) => String(e.value).startsWith(`${m.mountPath}/`));
        assert.ok(mount, `${rel(file)}: ${e.name}=${e.value} is not under a mounted volume`);
        assert.ok(mount.volume?.secret?.secretName, `${rel(file)}: ${e.name} comes from a volume that is not a Secret`);
        assert.equal(mount.readOnly, true, `${rel(file)}: ${e.name}'s volume is not read-only`);
        // 0440 written as decimal 288: YAML 1.1 (Kubernetes) and 1.2 (this parser) read "0440" differently
        assert.equal(mount.volume.secret.defaultMode, 0o440, `${rel(file)}: secret mode of ${e.name}`);
        checked++;
      }
    }
    assert.ok(checked >= 7, `file variables checked: ${checked}`);
  });

  it('place GPU training workers on GPU nodes with one GPU requested and limited, with the GPU backend', () => {
    const gpu = workloads.filter(({ doc }) => doc.metadata.name === 'ntml-training-gpu');
    assert.equal(gpu.length, 1);
    const { spec, c } = gpu[0];
    assert.equal(spec.nodeSelector?.['nvidia.com/gpu.present'], 'true');
    assert.ok((spec.tolerations as Doc[]).some((t) => t.key === 'nvidia.com/gpu' && t.effect === 'NoSchedule'));
    assert.equal(c.resources.limits['nvidia.com/gpu'], 1);
    assert.equal(c.resources.requests['nvidia.com/gpu'], c.resources.limits['nvidia.com/gpu'], 'extended resources: request = limit');
    assert.equal((c.env as Doc[]).find((e) => e.name === 'NTML_BACKEND')?.value, 'gpu');
    // no explicit slots: one per visible GPU, which the device plugin's NVIDIA_VISIBLE_DEVICES says is one
    assert.ok(!(c.env as Doc[]).some((e) => e.name === 'NTML_WORKER_SLOTS'));
    assert.equal(workerSlots({ NTML_BACKEND: 'gpu', NVIDIA_VISIBLE_DEVICES: 'GPU-4f1c2a7e-0b9d-4c55-8f1e-3b2a1c0d9e8f' }, () => 8), 1);
    const cpu = workloads.find(({ doc }) => doc.metadata.name === 'ntml-training-cpu')!;
    assert.ok(!cpu.c.resources.limits?.['nvidia.com/gpu'] && !cpu.spec.nodeSelector, 'CPU workers ask for no GPU');
  });

  it('give every training worker more termination grace than its shutdown grace, and every one that stops an epoch some', () => {
    const training = workloads.filter(({ doc }) => /training/.test(doc.metadata.name));
    assert.equal(training.length, 2);
    for (const { file, doc, spec, c } of training) {
      const grace = Number((c.env as Doc[]).find((e) => e.name === 'NTML_SHUTDOWN_GRACE_SECONDS')?.value);
      assert.ok(grace > 0, `${rel(file)}: NTML_SHUTDOWN_GRACE_SECONDS set`);
      // the SDK cancels at the end of the grace, then reports the cancellation: that needs time too
      assert.ok(spec.terminationGracePeriodSeconds >= grace + 30, `${doc.metadata.name}: terminationGracePeriodSeconds ${spec.terminationGracePeriodSeconds} vs grace ${grace}`);
    }
    // patches and overlays must not change one without the other
    for (const { file, doc } of allDocs) {
      if (training.some((t) => t.file === file)) continue;
      const text = JSON.stringify(doc);
      assert.equal(text.includes('NTML_SHUTDOWN_GRACE_SECONDS'), false, `${rel(file)} changes the shutdown grace apart from the termination grace`);
      if (doc.metadata?.name !== 'ntml-orchestration') {
        assert.equal(text.includes('terminationGracePeriodSeconds'), false, `${rel(file)} changes a training worker's termination grace`);
      }
    }
  });

  it('use only the images the Dockerfiles build, and run every worker unprivileged', () => {
    assert.equal(workloads.length, 3, 'orchestration, CPU training and GPU training workers');
    const images = new Set(workloads.map(({ c }) => c.image));
    assert.deepEqual([...images].sort(), ['ntml-orchestration', 'ntml-training-cpu', 'ntml-training-gpu']);
    for (const image of images) assert.ok(existsSync(path.join(DOCKER, `${image.replace(/^ntml-/, '')}.Dockerfile`)), `no Dockerfile for ${image}`);
    for (const f of kustomizations) {
      for (const i of (docsByFile.get(f)![0].images ?? []) as Doc[]) assert.ok(images.has(i.name), `${rel(f)} retags unknown image ${i.name}`);
    }
    for (const { file, spec, c } of workloads) {
      assert.equal(spec.securityContext?.runAsNonRoot, true, rel(file));
      assert.equal(c.securityContext?.allowPrivilegeEscalation, false, rel(file));
      assert.ok(((c.envFrom ?? []) as Doc[]).some((e) => e.configMapRef?.name === 'ntml-config'), `${rel(file)} reads ntml-config`);
    }
  });
});

describe('Dockerfiles', () => {
  const dockerfiles = walk(DOCKER, (f) => f.endsWith('.Dockerfile'));

  it('copy only files that exist, every source folder of the running code, and start an existing entry point', () => {
    assert.equal(dockerfiles.length, 3);
    for (const f of dockerfiles) {
      const text = readFileSync(f, 'utf8').replace(/\\\n/g, ' ');
      const copies = text
        .split('\n')
        .filter((l) => /^COPY\s/.test(l) && !/--from=/.test(l))
        .map((l) => l.trim().split(/\s+/).slice(1).filter((a) => !a.startsWith('--')));
      assert.ok(copies.length >= 5, `${rel(f)}: COPY lines`);
      const sources = copies.flatMap((args) => args.slice(0, -1));
      for (const src of sources) assert.ok(existsSync(path.join(REPO, src)), `${rel(f)} copies ${src}, which does not exist`);
      for (const dir of SOURCE_DIRS.filter((d) => d !== 'infra')) assert.ok(sources.includes(dir), `${rel(f)} does not copy ${dir}/`);
      assert.ok(sources.includes('infra/stack'), `${rel(f)} does not copy infra/stack (cli/ imports it)`);
      // what the ignore file lets through must cover every COPY source
      const ignore = readFileSync(`${f}.dockerignore`, 'utf8').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
      assert.equal(ignore[0], '*', `${rel(f)}.dockerignore starts from nothing`);
      const allowed = ignore.filter((l) => l.startsWith('!')).map((l) => l.slice(1));
      for (const src of sources) assert.ok(allowed.some((a) => src === a || src.startsWith(`${a}/`)), `${rel(f)}.dockerignore excludes ${src}`);
      const cmd = /^CMD \["node", "dist\/(.+)\.js"\]/m.exec(text);
      assert.ok(cmd, `${rel(f)}: CMD runs node dist/...js`);
      assert.ok(existsSync(path.join(REPO, `${cmd[1]}.ts`)), `${rel(f)} starts ${cmd[1]}, which has no source`);
      // base images are named by the build argument (pin it by digest) or a fixed tag, never latest
      for (const from of text.split('\n').filter((l) => /^FROM\s/.test(l))) assert.doesNotMatch(from, /:latest\b/, rel(f));
      assert.match(text, /^ARG NODE_IMAGE=node:20-bookworm-slim$/m, `${rel(f)}: Node 20 base`);
      assert.match(text, /^USER node$/m, `${rel(f)}: unprivileged user`);
    }
  });

  it('install tfjs-node-gpu only in the GPU image, pin what they download, and match the manifests\' backends', () => {
    const read = (n: string) => readFileSync(path.join(DOCKER, n), 'utf8');
    assert.match(read('training-gpu.Dockerfile'), /@tensorflow\/tfjs-node-gpu@4\.22\.0/);
    assert.match(read('training-gpu.Dockerfile'), /NTML_BACKEND=gpu/);
    assert.doesNotMatch(read('training-cpu.Dockerfile'), /tfjs-node-gpu/);
    assert.match(read('training-cpu.Dockerfile'), /NTML_BACKEND=cpu/);
    const pkg = JSON.parse(readFileSync(path.join(REPO, 'package.json'), 'utf8'));
    assert.equal(pkg.dependencies['@tensorflow/tfjs-node-gpu'], undefined, 'never a package dependency (its install script downloads)');
    assert.equal(pkg.dependencies['@tensorflow/tfjs-node'], '4.22.0', 'the GPU binding matches the CPU one');
    for (const line of read('gpu-requirements.txt').split('\n').filter((l) => l.trim() && !l.startsWith('#'))) {
      assert.match(line, /^nvidia-[a-z0-9-]+-cu12==[0-9.]+$/, `pinned: ${line}`);
    }
    for (const n of ['training-cpu.Dockerfile', 'training-gpu.Dockerfile']) assert.match(read(n), /ARG TF_WHEEL=tensorflow(-cpu)?==2\.21\.0/);
  });
});

describe('configuration by environment', () => {
  it('documents every variable the code reads in docs/deployment.md', () => {
    const doc = readFileSync(path.join(REPO, 'docs', 'deployment.md'), 'utf8');
    const read = new Set(sourceText.match(/\bNTML_[A-Z0-9_]*[A-Z0-9]\b/g) ?? []);
    assert.ok(read.size >= 25, `variables read: ${read.size}`);
    for (const name of read) {
      // NTML_WEBHOOK_<NAME> is a family, documented as such
      if (/^NTML_WEBHOOK_/.test(name)) continue;
      assert.ok(doc.includes(`\`${name}\``), `docs/deployment.md does not document ${name}`);
    }
    assert.ok(doc.includes('NTML_WEBHOOK_<NAME>'));
  });

  it('training workers take one slot per device: NTML_WORKER_SLOTS, else visible GPUs on GPU, else 1', () => {
    const noProbe = () => undefined;
    assert.equal(workerSlots({}, noProbe), 1, 'CPU default');
    assert.equal(workerSlots({ NTML_WORKER_SLOTS: '3' }, noProbe), 3);
    assert.equal(workerSlots({ NTML_BACKEND: 'gpu', NTML_WORKER_SLOTS: '2', CUDA_VISIBLE_DEVICES: '0,1,2,3' }, noProbe), 2, 'explicit wins');
    assert.equal(workerSlots({ NTML_BACKEND: 'gpu', CUDA_VISIBLE_DEVICES: '0,1' }, noProbe), 2);
    assert.equal(workerSlots({ NTML_BACKEND: 'gpu', NVIDIA_VISIBLE_DEVICES: 'GPU-a,GPU-b,GPU-c' }, noProbe), 3);
    assert.equal(workerSlots({ NTML_BACKEND: 'gpu', NVIDIA_VISIBLE_DEVICES: 'all' }, () => 4), 4, '"all": ask the driver');
    assert.equal(workerSlots({ NTML_BACKEND: 'gpu' }, noProbe), 1, 'undeterminable: 1');
    assert.equal(workerSlots({ NTML_BACKEND: 'gpu', CUDA_VISIBLE_DEVICES: '-1' }, () => 4), 1, 'no GPU visible: 1 (the backend check then refuses to start)');
    assert.equal(workerSlots({ NTML_BACKEND: 'cpu', CUDA_VISIBLE_DEVICES: '0,1' }, noProbe), 1, 'GPUs do not matter to a CPU worker');
    assert.equal(visibleGpuCount({ CUDA_VISIBLE_DEVICES: '' }), undefined);
    for (const bad of ['0', '-1', '1.5', 'two']) assert.throws(() => workerSlots({ NTML_WORKER_SLOTS: bad }), /NTML_WORKER_SLOTS must be a positive integer/);
  });

  it('refuses a zero shutdown grace and unknown log levels, naming the variable', () => {
    const base = { NTML_TEMPORAL_ADDRESS: '127.0.0.1:7233' };
    assert.equal(workerEnv(base).shutdownGraceSeconds, 60);
    assert.throws(() => workerEnv({ ...base, NTML_SHUTDOWN_GRACE_SECONDS: '0' }), /NTML_SHUTDOWN_GRACE_SECONDS must be a positive number/);
    assert.throws(() => workerEnv({}), /NTML_TEMPORAL_ADDRESS is not set/);
    assert.equal(logLevel({ NTML_LOG_LEVEL: 'debug' }), 'DEBUG');
    assert.throws(() => logLevel({ NTML_LOG_LEVEL: 'verbose' }), /NTML_LOG_LEVEL must be one of/);
  });
});
