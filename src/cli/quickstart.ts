/**
 * `teiplex serve --quickstart`: the manager with an embedded default that needs no network and no
 * config file. The first run writes two generated models (make-test-model, seeded weights) into
 * a cache folder; every run serves them: `minilm`, an all-MiniLM-L6-v2-shaped embedding model, as
 * an instance started at boot, and `reranker`, a tiny reranker, as a catalog model started by
 * the first request that names it and stopped after 5 idle minutes. The state file and the
 * children's logs live in the same folder, apart from any other manager's. Environment variables
 * (TEIPLEX_API_PORT, ...) still override the defaults.
 */
import { access, mkdir, rename, rm } from 'node:fs/promises';
import { homedir } from 'node:os';
import path from 'node:path';
import { type Config, resolveConfig } from '../config/config.js';
import type { TestModelKind } from '../testmodel/bert-graph.js';
import type { ShapeName } from '../testmodel/shapes.js';
import { writeTestModel } from '../testmodel/write-model.js';

interface QuickstartModel {
  dir: string;
  kind: TestModelKind;
  shape: ShapeName;
}

export const QUICKSTART_MODELS = {
  minilm: { dir: 'minilm-l6', kind: 'embedding', shape: 'minilm-l6' },
  reranker: { dir: 'reranker-tiny', kind: 'reranker', shape: 'tiny' },
} as const satisfies Record<string, QuickstartModel>;

/** `$TEIPLEX_CACHE_DIR`, else `$XDG_CACHE_HOME/teiplex`, else `~/.cache/teiplex`; then `quickstart/`. */
export function quickstartDir(env: NodeJS.ProcessEnv): string {
  const cache = env.TEIPLEX_CACHE_DIR ?? path.join(env.XDG_CACHE_HOME ?? path.join(homedir(), '.cache'), 'teiplex');
  return path.resolve(cache, 'quickstart');
}

const exists = (p: string): Promise<boolean> =>
  access(p).then(
    () => true,
    () => false,
  );

/**
 * Writes each model the folder lacks. A model is written into a temporary sibling and renamed
 * into place, so a run killed half-way leaves no half model that a later run would serve (the
 * temporary folder is removed by the next run). Returns the names written.
 */
export async function ensureQuickstartModels(dir: string): Promise<string[]> {
  const models = path.join(dir, 'models');
  await mkdir(models, { recursive: true, mode: 0o700 });
  const written: string[] = [];
  for (const [name, m] of Object.entries(QUICKSTART_MODELS)) {
    const target = path.join(models, m.dir);
    if (await exists(target)) continue;
    const partial = path.join(models, `.${m.dir}.partial`);
    await rm(partial, { recursive: true, force: true });
    await writeTestModel({ out: partial, kind: m.kind, shape: m.shape, seed: 0, externalData: false });
    await rename(partial, target);
    written.push(name);
  }
  return written;
}

/** The quickstart config: the defaults, the two models, the environment's overrides. */
export function quickstartConfig(dir: string, env: NodeJS.ProcessEnv): Config {
  const model = (name: keyof typeof QUICKSTART_MODELS): string => path.join(dir, 'models', QUICKSTART_MODELS[name].dir);
  return resolveConfig(
    {
      state_file: path.join(dir, 'state.toml'),
      log_dir: path.join(dir, 'logs'),
      instances: [{ name: 'minilm', model_id: model('minilm') }],
      models: [{ name: 'reranker', model_id: model('reranker'), idle_timeout_secs: 300, max_replicas: 1 }],
    },
    env,
    'quickstart',
  );
}

/** What a person reads once the quickstart manager is ready: where each front end is. */
export function quickstartBanner(host: string, apiPort: number, grpcPort: number): string {
  const api = `http://${host.includes(':') ? `[${host}]` : host}:${apiPort}`;
  return [
    '',
    `teiplex quickstart is serving 'minilm' (an instance) and 'reranker' (a catalog model, started by its first request):`,
    `  admin API + HTTP data plane  ${api}   (OpenAPI: ${api}/docs, status page: ${api}/ui)`,
    `  gRPC multiplexer             ${host}:${grpcPort}`,
    `  try: curl -s ${api}/v1/embeddings -H 'content-type: application/json' -d '{"model": "minilm", "input": "hello"}'`,
    '',
    '',
  ].join('\n');
}
