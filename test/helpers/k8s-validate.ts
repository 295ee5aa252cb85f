/**
 * Validates rendered Kubernetes objects (the output of `kubectl kustomize`) two ways, both from
 * the kubernetes-models package family (kubernetes-models for the built-in kinds,
 * @kubernetes-models/prometheus-operator for ServiceMonitor):
 * - against the kind's JSON schema (the models' `validate()`: types, required fields, enums);
 * - against the kind's TypeScript interface, by type-checking the object as a literal of that
 *   type with the TypeScript compiler: the schemas accept fields they do not know, the API
 *   server (strict field validation) does not; an excess property check names them.
 */
import { typedLiteralProblems } from './typed-literal.js';

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
 * compiler on the objects written as typed literals (test/helpers/typed-literal.ts).
 */
export function typeProblems(objects: readonly K8sObject[]): Promise<string[]> {
  return typedLiteralProblems(
    objects.map((o) => {
      const { module, iface } = modelModule(o);
      return { label: `${o.kind}/${o.metadata?.name}`, module, type: iface, value: o };
    }),
  );
}
