/**
 * Validates rendered Kubernetes objects (the output of `kubectl kustomize`) two ways, both from
 * the kubernetes-models package family (kubernetes-models for the built-in kinds,
 * @kubernetes-models/prometheus-operator for ServiceMonitor):
 * - against the kind's JSON schema (the models' `validate()`: types, required fields, enums);
 * - against the kind's TypeScript interface, by type-checking the object as a literal of that
 *   type with the TypeScript compiler: the schemas accept fields they do not know, the API
 *   server (strict field validation) does not; an excess property check names them.
 */
import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import ts from 'typescript';
import { projectPath } from '../../src/common/paths.js';

export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  [key: string]: any;
}

/** The module of a kind's model and its interface's name. */
export function modelModule(o: Pick<K8sObject, 'apiVersion' | 'kind'>): { module: string; iface: string } {
  const [group, version] = o.apiVersion.includes('/') ? o.apiVersion.split('/') : ['', o.apiVersion];
  if (group === 'monitoring.coreos.com') return { module: `@kubernetes-models/prometheus-operator/${group}/${version}/${o.kind}`, iface: `I${o.kind}` };
  return { module: `kubernetes-models/${group === '' ? '' : `${group}/`}${version}/${o.kind}`, iface: `I${o.kind}` };
}

/** Schema problems of one object (empty: valid); a kind the packages lack is a problem too. */
export async function schemaProblems(o: K8sObject): Promise<string[]> {
  const where = `${o.kind}/${o.metadata?.name}`;
  const { module } = modelModule(o);
  let Model: new (data: unknown) => { validate(): void };
  try {
    Model = (await import(module))[o.kind];
  } catch (err) {
    return [`${where}: no model for ${o.apiVersion} ${o.kind} (${(err as Error).message.split('\n')[0]})`];
  }
  try {
    new Model(o).validate();
    return [];
  } catch (err) {
    return String((err as Error).message)
      .split(/,\s*(?=data)/)
      .map((m) => `${where}: ${m.trim()}`);
  }
}

/**
 * Fields the kinds' interfaces do not have, and values of the wrong type, found by the TypeScript
 * compiler on the objects written as typed literals (one file, one compile).
 */
export async function typeProblems(objects: readonly K8sObject[]): Promise<string[]> {
  const dir = projectPath('.tmp', `k8s-types-${process.pid}`);
  await mkdir(dir, { recursive: true });
  const file = path.join(dir, 'objects.ts');
  const lines: string[] = [];
  objects.forEach((o, i) => {
    const { module, iface } = modelModule(o);
    lines.push(`import type { ${iface} as T${i} } from ${JSON.stringify(module)};`);
  });
  objects.forEach((o, i) => {
    lines.push(`// ${o.kind}/${o.metadata?.name}`, `export const o${i}: T${i} = ${JSON.stringify(o, null, 1)};`);
  });
  await writeFile(file, lines.join('\n'));
  try {
    const program = ts.createProgram([file], {
      strict: true,
      noEmit: true,
      skipLibCheck: true,
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
      target: ts.ScriptTarget.ES2022,
      types: [],
    });
    const sf = program.getSourceFile(file)!;
    const text = sf.getFullText();
    return ts.getPreEmitDiagnostics(program, sf).map((d) => {
      const at = d.start ?? 0;
      // The object the diagnostic is in: the nearest `// Kind/name` line above it.
      const before = text.slice(0, at);
      const owner = /\n\/\/ (\S+)/.exec(before.slice(before.lastIndexOf('\n// ')))?.[1] ?? '?';
      // An inline type is spelled out in full: name the field, not the type.
      const message = ts.flattenDiagnosticMessageText(d.messageText, ' ').replace(/( does not exist in type) '.{80,}'\.$/, '$1 (its parent)');
      return `${owner}: ${message}`;
    });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
