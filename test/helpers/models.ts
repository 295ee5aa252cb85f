/**
 * Generated models for tests and benchmarks, written once per spec by `writeTestModel` (what
 * `teiplex make-test-model` runs) and cached under .tmp/test-models/, keyed by the spec and the
 * generator's own source so a change to the generator writes fresh models. Test files run in
 * parallel processes: each writer writes its own directory and renames it into place; the first
 * rename wins and a later writer drops its copy, so a reader never sees a model disappear or change.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { projectPath } from '../../src/common/paths.js';
import type { TestModelKind } from '../../src/testmodel/bert-graph.js';
import type { ShapeName } from '../../src/testmodel/shapes.js';
import { writeTestModel } from '../../src/testmodel/write-model.js';

export interface TestModelSpec {
  kind: TestModelKind;
  shape?: ShapeName;
  seed?: number;
  numLabels?: number;
  prompts?: Record<string, string>;
  sentenceEmbedding?: boolean;
  normalizeModule?: boolean;
  externalData?: boolean;
  onnxPath?: string;
}

export const TEST_MODELS_DIR = projectPath('.tmp', 'test-models');

/** JSON with object keys sorted at every level, so equal specs give equal strings. */
function stableJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(stableJson).join(',')}]`;
  if (v !== null && typeof v === 'object') {
    const entries = Object.entries(v as Record<string, unknown>).filter(([, x]) => x !== undefined);
    return `{${entries
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([k, x]) => `${JSON.stringify(k)}:${stableJson(x)}`)
      .join(',')}}`;
  }
  return JSON.stringify(v);
}

let generatorDigest: string | undefined;
function generatorVersion(): string {
  if (generatorDigest === undefined) {
    const h = createHash('sha256');
    const dir = projectPath('src', 'testmodel');
    for (const f of readdirSync(dir).sort()) h.update(f).update(readFileSync(path.join(dir, f)));
    generatorDigest = h.digest('hex');
  }
  return generatorDigest;
}

/** The directory of a generated model matching `spec` (written on first use). */
export async function testModel(spec: TestModelSpec): Promise<string> {
  const digest = createHash('sha256').update(generatorVersion()).update(stableJson(spec)).digest('hex').slice(0, 16);
  const dir = path.join(TEST_MODELS_DIR, `${spec.kind}-${spec.shape ?? 'tiny'}-${digest}`);
  if (existsSync(path.join(dir, 'config.json'))) return dir;
  const own = `${dir}.w-${process.pid}-${randomBytes(4).toString('hex')}`;
  await writeTestModel({
    out: own,
    kind: spec.kind,
    shape: spec.shape ?? 'tiny',
    seed: spec.seed ?? 0,
    numLabels: spec.numLabels,
    prompts: spec.prompts,
    sentenceEmbedding: spec.sentenceEmbedding,
    normalizeModule: spec.normalizeModule,
    externalData: spec.externalData ?? false,
    onnxPath: spec.onnxPath,
  });
  try {
    await rename(own, dir); // fails when another writer's copy is already in place
  } catch (e) {
    await rm(own, { recursive: true, force: true });
    if (!existsSync(path.join(dir, 'config.json'))) throw e;
  }
  return dir;
}
