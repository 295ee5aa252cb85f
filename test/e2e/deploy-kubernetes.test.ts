/**
 * deploy/kubernetes rendered by `kubectl kustomize` (offline) and checked: every object against
 * its kind's schema and TypeScript interface (test/helpers/k8s-validate.ts: kubernetes-models,
 * @kubernetes-models/prometheus-operator for the ServiceMonitor), then the references between
 * them: Service, PodDisruptionBudget and NetworkPolicy selectors pick the DaemonSet's pods, the
 * ServiceMonitor picks the headless Service and one of its ports, named ports and probe ports
 * exist, the ConfigMap's key is mounted where the manager's --config points, the config loads
 * through the manager's own loader and its ports, state and cache paths match the pod's ports and
 * writable mounts, the security context keeps the manager non-root on a read-only root. Each
 * check is shown failing on a doctored copy. The config file also boots a real manager (ports,
 * address and /data moved by environment) that answers the probes' and the scrape's paths.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { parseAllDocuments } from 'yaml';
import { loadConfig } from '../../src/config/config.js';
import { projectPath } from '../../src/common/paths.js';
import { type K8sObject, schemaProblems, typeProblems } from '../helpers/k8s-validate.js';
import { startManager } from '../helpers/manager-process.js';

const run = promisify(execFile);
const BASE = projectPath('deploy', 'kubernetes');

/** The image's user (Dockerfile: `useradd --system --uid 10001`). */
const IMAGE_UID = 10001;

let dir: string;
let objects: K8sObject[];

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'teiplex-deploy-k8s-'));
  const { stdout } = await run('kubectl', ['kustomize', BASE], { maxBuffer: 16 * 1024 * 1024 });
  objects = parseAllDocuments(stdout).map((d) => d.toJS() as K8sObject);
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

const one = (objs: readonly K8sObject[], kind: string, name?: string): K8sObject => {
  const found = objs.filter((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
  assert.equal(found.length, 1, `one ${kind}${name ? `/${name}` : ''}: ${found.map((o) => o.metadata.name).join(', ')}`);
  return found[0];
};

const matches = (selector: Record<string, string> | undefined, labels: Record<string, string> | undefined): boolean =>
  selector !== undefined && Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => labels?.[k] === v);

/**
 * The references between the rendered objects, and what the manager's config and the pod must
 * agree on: problems as sentences (empty: consistent).
 */
async function crossReferenceProblems(objs: readonly K8sObject[]): Promise<string[]> {
  const out: string[] = [];
  const ds = one(objs, 'DaemonSet');
  const pod = ds.spec.template;
  const podLabels: Record<string, string> = pod.metadata.labels;
  const spec = pod.spec;
  const manager = spec.containers.find((c: any) => c.name === 'teiplex');
  if (manager === undefined) return ['DaemonSet: no container named teiplex'];
  const portNames = new Map<string, number>(manager.ports.map((p: any) => [p.name, p.containerPort]));
  const namespaces = new Set(objs.filter((o) => o.kind !== 'Namespace').map((o) => o.metadata.namespace));
  if (namespaces.size !== 1 || namespaces.has(undefined as unknown as string)) out.push(`objects in namespaces ${[...namespaces].join(', ')}, not one`);
  const ns = one(objs, 'Namespace').metadata.name;
  if (!namespaces.has(ns)) out.push(`the Namespace ${ns} holds none of the objects`);

  if (!matches(ds.spec.selector.matchLabels, podLabels)) out.push('DaemonSet: its selector does not match its pod template labels');
  for (const svc of objs.filter((o) => o.kind === 'Service')) {
    const where = `Service/${svc.metadata.name}`;
    if (!matches(svc.spec.selector, podLabels)) out.push(`${where}: selector ${JSON.stringify(svc.spec.selector)} picks no DaemonSet pod`);
    for (const p of svc.spec.ports) {
      const target = p.targetPort ?? p.port;
      if (typeof target === 'string' ? !portNames.has(target) : ![...portNames.values()].includes(target)) out.push(`${where}: port ${p.name} targets ${target}, no container port`);
    }
  }
  for (const probe of ['livenessProbe', 'readinessProbe', 'startupProbe']) {
    const p = manager[probe];
    if (p === undefined) {
      out.push(`DaemonSet: no ${probe}`);
      continue;
    }
    const port = p.httpGet?.port;
    if (typeof port === 'string' ? !portNames.has(port) : ![...portNames.values()].includes(port)) out.push(`DaemonSet: ${probe} on port ${port}, no container port`);
    if (p.httpGet?.path !== '/health') out.push(`DaemonSet: ${probe} on ${p.httpGet?.path}, not /health`);
  }
  const pdb = one(objs, 'PodDisruptionBudget');
  if (!matches(pdb.spec.selector.matchLabels, podLabels)) out.push('PodDisruptionBudget: selector picks no DaemonSet pod');
  const np = one(objs, 'NetworkPolicy');
  if (!matches(np.spec.podSelector.matchLabels, podLabels)) out.push('NetworkPolicy: podSelector picks no DaemonSet pod');
  for (const rule of np.spec.ingress ?? []) for (const p of rule.ports ?? []) if (typeof p.port === 'string' && !portNames.has(p.port)) out.push(`NetworkPolicy: ingress port ${p.port} is no container port`);
  const sm = one(objs, 'ServiceMonitor');
  const scraped = objs.filter((o) => o.kind === 'Service' && matches(sm.spec.selector.matchLabels, o.metadata.labels));
  if (scraped.length !== 1) out.push(`ServiceMonitor: selects ${scraped.length} Services, not one`);
  for (const e of sm.spec.endpoints) {
    for (const svc of scraped) if (!svc.spec.ports.some((p: any) => p.name === e.port)) out.push(`ServiceMonitor: endpoint port ${e.port} is not a port of Service/${svc.metadata.name}`);
    if (e.path !== '/metrics') out.push(`ServiceMonitor: scrapes ${e.path}, not /metrics`);
    if (e.honorLabels !== true) out.push("ServiceMonitor: honorLabels is not true (the manager's `instance` label would become exported_instance)");
  }
  if (scraped.length === 1 && scraped[0].spec.clusterIP !== 'None') out.push('ServiceMonitor: its Service is not headless (one target per manager)');

  // The config: --config names a file on a ConfigMap volume holding that key.
  const args: string[] = manager.args ?? [];
  const configPath = args[args.indexOf('--config') + 1];
  if (!args.includes('--config') || configPath === undefined) return [...out, 'DaemonSet: the manager has no --config'];
  const mount = manager.volumeMounts.find((v: any) => path.posix.dirname(configPath) === v.mountPath);
  const volume = mount && spec.volumes.find((v: any) => v.name === mount.name);
  const cm = volume?.configMap && objs.find((o) => o.kind === 'ConfigMap' && o.metadata.name === volume.configMap.name);
  const key = volume?.configMap?.items ? volume.configMap.items.find((i: any) => i.path === path.posix.basename(configPath))?.key : path.posix.basename(configPath);
  if (cm === undefined || key === undefined || typeof cm.data?.[key] !== 'string') return [...out, `DaemonSet: --config ${configPath} is not a ConfigMap key mounted there`];

  // The config as the manager reads it, against the pod.
  const file = path.join(dir, `config-${Math.random().toString(36).slice(2)}.toml`);
  await writeFile(file, cm.data[key]);
  let config: Awaited<ReturnType<typeof loadConfig>>;
  try {
    config = await loadConfig(file, {});
  } catch (err) {
    return [...out, `ConfigMap/${cm.metadata.name}: the manager refuses ${key}: ${(err as Error).message}`];
  }
  if (portNames.get('api') !== config.api_port) out.push(`container port api ${portNames.get('api')}, the config's api_port ${config.api_port}`);
  if (portNames.get('grpc') !== config.grpc_port) out.push(`container port grpc ${portNames.get('grpc')}, the config's grpc_port ${config.grpc_port}`);
  if (config.auto_restore) out.push("the config restores the node's state file (auto_restore): a rolled pod would ignore a changed ConfigMap");
  const grace = spec.terminationGracePeriodSeconds ?? 30;
  if (!(grace > 2 * config.graceful_shutdown_timeout_secs)) out.push(`terminationGracePeriodSeconds ${grace} is not above 2 x graceful_shutdown_timeout_secs (${config.graceful_shutdown_timeout_secs}): the manager's shutdown would be cut`);
  if (config.listen_host === '127.0.0.1' || config.listen_host === 'localhost') out.push(`the config listens on ${config.listen_host}: the Service cannot reach it`);
  const writable = (p: string) =>
    manager.volumeMounts.some((v: any) => v.readOnly !== true && (p === v.mountPath || p.startsWith(`${v.mountPath}/`)) && spec.volumes.some((vol: any) => vol.name === v.name && (vol.hostPath || vol.persistentVolumeClaim)));
  for (const [what, p] of [
    ['state_file', config.state_file],
    ['log_dir', config.log_dir],
    ['HF_HOME', manager.env?.find((e: any) => e.name === 'HF_HOME')?.value],
  ] as const)
    if (typeof p !== 'string' || !writable(p)) out.push(`${what} ${p} is not on a writable hostPath or PVC mount (lost with the pod)`);
  for (const v of manager.volumeMounts) if (!spec.volumes.some((vol: any) => vol.name === v.name)) out.push(`DaemonSet: mount ${v.name} has no volume`);

  // GPUs, placement, security.
  if (manager.resources?.limits?.['nvidia.com/gpu'] === undefined) out.push('DaemonSet: no nvidia.com/gpu limit');
  if (Object.keys(spec.nodeSelector ?? {}).length === 0) out.push('DaemonSet: no nodeSelector (it would run on every node)');
  if (!(spec.tolerations ?? []).some((t: any) => t.key === 'nvidia.com/gpu')) out.push('DaemonSet: no toleration for nvidia.com/gpu');
  if (spec.securityContext?.runAsNonRoot !== true || spec.securityContext?.runAsUser !== IMAGE_UID) out.push(`DaemonSet: the pod does not run as the image's non-root user ${IMAGE_UID}`);
  if (manager.securityContext?.readOnlyRootFilesystem !== true) out.push('DaemonSet: the manager container has a writable root filesystem');
  if (manager.securityContext?.allowPrivilegeEscalation !== false) out.push('DaemonSet: the manager container allows privilege escalation');
  if (!(manager.securityContext?.capabilities?.drop ?? []).includes('ALL')) out.push('DaemonSet: the manager container keeps its capabilities');
  for (const c of [...spec.containers, ...(spec.initContainers ?? [])]) if (!/^teiplex(:|$)/.test(c.image)) out.push(`DaemonSet: container ${c.name} runs ${c.image}, not the teiplex image`);
  return out;
}

describe('deploy/kubernetes', () => {
  test('renders offline: the kinds the deployment needs, in one namespace', () => {
    assert.deepEqual(objects.map((o) => o.kind).sort(), ['ConfigMap', 'DaemonSet', 'Namespace', 'NetworkPolicy', 'PodDisruptionBudget', 'Service', 'Service', 'ServiceAccount', 'ServiceMonitor']);
    const ds = one(objects, 'DaemonSet');
    assert.match(one(objects, 'ConfigMap').metadata.name, /^teiplex-config-[a-z0-9]{10}$/, 'the ConfigMap name carries its content hash');
    assert.equal(ds.spec.template.spec.volumes.find((v: any) => v.name === 'config').configMap.name, one(objects, 'ConfigMap').metadata.name, 'kustomize rewrote the reference');
    assert.equal(ds.spec.template.spec.containers[0].image, 'teiplex:gpu', "the Dockerfile's gpu target, as a placeholder");
  });

  test('every object is valid against its schema and its type (kubernetes-models)', async () => {
    for (const o of objects) assert.deepEqual(await schemaProblems(o), [], `${o.kind}/${o.metadata.name}`);
    assert.deepEqual(await typeProblems(objects), []);
  });

  test('the validators refuse doctored objects: a wrong type, a misspelled field, an unknown kind', async () => {
    const ds = structuredClone(one(objects, 'DaemonSet'));
    ds.spec.template.spec.containers[0].ports[0].containerPort = '9000';
    assert.deepEqual(await schemaProblems(ds), ['DaemonSet/teiplex: data/spec/template/spec/containers/0/ports/0/containerPort must be integer']);
    const sm = structuredClone(one(objects, 'ServiceMonitor'));
    sm.spec.endpoints[0].honorLabels = 'yes';
    assert.deepEqual(await schemaProblems(sm), ['ServiceMonitor/teiplex: data/spec/endpoints/0/honorLabels must be boolean']);
    const typo = structuredClone(one(objects, 'DaemonSet'));
    const c = typo.spec.template.spec.containers[0];
    c.readinesProbe = c.readinessProbe;
    delete c.readinessProbe;
    const pdb = structuredClone(one(objects, 'PodDisruptionBudget'));
    pdb.spec.maxUnavailble = 2;
    assert.deepEqual(await typeProblems([typo, pdb]), [
      `DaemonSet/teiplex: Object literal may only specify known properties, and '"readinesProbe"' does not exist in type 'IContainer'.`,
      `PodDisruptionBudget/teiplex: Object literal may only specify known properties, and '"maxUnavailble"' does not exist in type 'IPodDisruptionBudgetSpec'.`,
    ]);
    assert.match((await schemaProblems({ apiVersion: 'example.com/v1', kind: 'Widget', metadata: { name: 'w' } }))[0], /^Widget\/w: no model for example\.com\/v1 Widget/);
  });

  test('the references hold: selectors, ports, probes, the config mount, the config itself, GPUs, security', async () => {
    assert.deepEqual(await crossReferenceProblems(objects), []);
  });

  test('the reference checks fail on doctored copies', async () => {
    const doctor = (edit: (objs: K8sObject[]) => void): Promise<string[]> => {
      const copy = structuredClone(objects);
      edit(copy);
      return crossReferenceProblems(copy);
    };
    assert.deepEqual(
      await doctor((o) => {
        one(o, 'Service', 'teiplex').spec.selector['app.kubernetes.io/component'] = 'router';
      }),
      ['Service/teiplex: selector {"app.kubernetes.io/component":"router","app.kubernetes.io/name":"teiplex"} picks no DaemonSet pod'],
    );
    assert.deepEqual(
      await doctor((o) => {
        one(o, 'DaemonSet').spec.template.spec.containers[0].readinessProbe.httpGet.port = 'http';
      }),
      ['DaemonSet: readinessProbe on port http, no container port'],
    );
    assert.deepEqual(
      await doctor((o) => {
        one(o, 'Service', 'teiplex-nodes').spec.ports[1].targetPort = 9100;
      }),
      ['Service/teiplex-nodes: port grpc targets 9100, no container port'],
    );
    assert.deepEqual(
      await doctor((o) => {
        one(o, 'NetworkPolicy').spec.podSelector.matchLabels = { app: 'teiplex' };
      }),
      ['NetworkPolicy: podSelector picks no DaemonSet pod'],
    );
    assert.deepEqual(
      await doctor((o) => {
        one(o, 'ServiceMonitor').spec.endpoints[0].port = 'metrics';
      }),
      ['ServiceMonitor: endpoint port metrics is not a port of Service/teiplex-nodes'],
    );
    assert.deepEqual(
      await doctor((o) => {
        one(o, 'DaemonSet').spec.template.spec.containers[0].args = ['serve', '--config', '/etc/teiplex/config.toml'];
      }),
      ['DaemonSet: --config /etc/teiplex/config.toml is not a ConfigMap key mounted there'],
    );
    const cmBroken = await doctor((o) => {
      const cm = one(o, 'ConfigMap');
      cm.data['teiplex.toml'] = cm.data['teiplex.toml'].replace('api_port = 9000', 'api_port = 9000\napi_prot = 9000');
    });
    assert.equal(cmBroken.length, 1, cmBroken.join('\n'));
    assert.match(cmBroken[0], /^ConfigMap\/teiplex-config-\w+: the manager refuses teiplex\.toml: .*api_prot/);
    // The listener on the pod's address with an admin API that needs no credential and no opt-in:
    // the manager would exit 2 at boot.
    const open = await doctor((o) => {
      const cm = one(o, 'ConfigMap');
      cm.data['teiplex.toml'] = cm.data['teiplex.toml'].replace('allow_remote_admin_without_auth = true', '');
    });
    assert.equal(open.length, 1, open.join('\n'));
    assert.match(open[0], /^ConfigMap\/teiplex-config-\w+: the manager refuses teiplex\.toml: .*allow_remote_admin_without_auth/);
    assert.deepEqual(
      await doctor((o) => {
        const cm = one(o, 'ConfigMap');
        cm.data['teiplex.toml'] = cm.data['teiplex.toml']
          .replace('grpc_port = 9001', 'grpc_port = 9002')
          .replace('state_file = "/data/state.toml"', 'state_file = "/tmp/state.toml"')
          .replace('graceful_shutdown_timeout_secs = 30', 'graceful_shutdown_timeout_secs = 40')
          .replace(/^auto_restore = false/m, 'auto_restore = true');
      }),
      [
        "container port grpc 9001, the config's grpc_port 9002",
        "the config restores the node's state file (auto_restore): a rolled pod would ignore a changed ConfigMap",
        "terminationGracePeriodSeconds 75 is not above 2 x graceful_shutdown_timeout_secs (40): the manager's shutdown would be cut",
        'state_file /tmp/state.toml is not on a writable hostPath or PVC mount (lost with the pod)',
      ],
    );
    assert.deepEqual(
      await doctor((o) => {
        const spec = one(o, 'DaemonSet').spec.template.spec;
        spec.securityContext.runAsNonRoot = false;
        spec.containers[0].securityContext.readOnlyRootFilesystem = false;
        delete spec.containers[0].resources.limits['nvidia.com/gpu'];
      }),
      ['DaemonSet: no nvidia.com/gpu limit', "DaemonSet: the pod does not run as the image's non-root user 10001", 'DaemonSet: the manager container has a writable root filesystem'],
    );
  });

  test("the ConfigMap's teiplex.toml boots a real manager that answers the probes' and the ServiceMonitor's paths", async () => {
    const cm = one(objects, 'ConfigMap');
    const file = path.join(dir, 'teiplex.toml');
    await writeFile(file, cm.data['teiplex.toml']);
    // The file as it is; the environment moves what a test machine cannot have: the pod's ports
    // and address (loopback, ephemeral ports), /data, and the standby child (none needed here).
    const m = await startManager(file, {
      TEIPLEX_API_PORT: '0',
      TEIPLEX_GRPC_PORT: '0',
      TEIPLEX_LISTEN_HOST: '127.0.0.1',
      TEIPLEX_STATE_FILE: path.join(dir, 'data', 'state.toml'),
      TEIPLEX_LOG_DIR: path.join(dir, 'data', 'logs'),
      TEIPLEX_STANDBY_CHILDREN: '0',
    });
    try {
      const manager = one(objects, 'DaemonSet').spec.template.spec.containers[0];
      for (const probe of ['livenessProbe', 'readinessProbe', 'startupProbe']) {
        const r = await m.api('GET', manager[probe].httpGet.path);
        assert.equal(r.status, 200, `${probe}: ${JSON.stringify(r.body)}`);
      }
      const sm = one(objects, 'ServiceMonitor');
      const scrape = await m.api('GET', sm.spec.endpoints[0].path);
      assert.equal(scrape.status, 200);
      assert.match(String(scrape.body), /^# TYPE teiplex_instances gauge$/m);
    } finally {
      await m.stop();
    }
  });

  test("the Dockerfile's user is the pod's, and its gpu target is the image placeholder", async () => {
    const dockerfile = await readFile(projectPath('Dockerfile'), 'utf8');
    assert.match(dockerfile, new RegExp(`useradd --system --uid ${IMAGE_UID} `));
    assert.match(dockerfile, /docker build --target gpu -t teiplex:gpu \./);
    assert.match(dockerfile, /ENTRYPOINT \["node", "\/app\/bin\/teiplex\.js"\]/, 'args: ["serve", ...] go to the teiplex CLI');
  });
});
