/**
 * Which instance serves a request's `model`: an instance name (that instance), else a model_id,
 * else an alias (`aliases` in the spec, or the child's --served-model-name); a model_id or alias
 * with several instances goes to the least loaded running one (the multiplexer's balancing,
 * src/mux/target.ts). No `model`: the only instance if there is exactly one, else 400 naming the
 * choices. Unknown: 404 listing the models. Known but not serving: 503 naming the status.
 * A catalog model (src/catalog) that nothing serves is started first (`ready`), and listed.
 */
import type { FastifyRequest } from 'fastify';
import type { AuthTarget } from '../../auth/api-keys.js';
import { asksNoWait, NO_WAIT_HEADER, type Catalog } from '../../catalog/catalog.js';
import type { CatalogModel } from '../../catalog/catalog-model.js';
import type { Instance } from '../../supervisor/instance.js';
import { canServe } from '../../supervisor/instance-state.js';
import type { InstanceDirectory, TargetResolver } from '../../mux/target.js';
import { aliasesOf } from './child-info.js';
import { RequestError } from './errors.js';
import { coldStartWaiter } from './request-context.js';

/** What a name resolved to: the instances it names (one for an instance name). */
export interface ModelMatch {
  /** How the name matched. */
  kind: 'instance' | 'model_id' | 'alias' | 'only';
  /** The name as the request gave it, or the only instance's model_id. */
  name: string;
  candidates: Instance[];
}

/** A model the data plane can serve: a model_id or alias, with the instances behind it. */
export interface ModelEntry {
  id: string;
  kind: 'model_id' | 'alias';
  /** The model ids behind it (one for a model_id; an alias may span a model family). */
  model_ids: string[];
  instances: string[];
  ready: boolean;
}

/** What an API key is checked against for a catalog model not loaded: its first replica. */
export function catalogTarget(m: CatalogModel): AuthTarget {
  return { name: `${m.name}-1`, spec: { model_id: m.spec.model_id } };
}

/** Checks a request's API key against a catalog model before starting it. */
export type AuthorizeModel = (request: FastifyRequest, target: AuthTarget) => void | Promise<void>;

export class ModelDirectory {
  constructor(
    private readonly instances: InstanceDirectory,
    private readonly resolver: TargetResolver,
    private readonly catalog?: Catalog,
    private readonly authorizeModel: AuthorizeModel = () => undefined,
  ) {}

  /**
   * When `model` names a catalog model that nothing serves: start it and wait (or, with the
   * no-wait header, 503 at once). The caller matches the name afterwards as usual.
   */
  async ready(request: FastifyRequest, model: string | null | undefined): Promise<void> {
    if (this.catalog === undefined || model === undefined || model === null || model === '') return;
    if (this.instances.find(model) !== undefined) return; // an instance name wins, as in match()
    const m = this.catalog.coldStartFor(model);
    if (m === undefined) return;
    await this.authorizeModel(request, catalogTarget(m));
    await this.catalog.ensureServing(m, !asksNoWait(request.headers[NO_WAIT_HEADER]), coldStartWaiter(request));
  }

  /** ready + match. */
  async matchReady(request: FastifyRequest, model: string | null | undefined, param = 'model'): Promise<ModelMatch> {
    await this.ready(request, model);
    return this.match(model, param);
  }

  /** The instances a name could mean (not yet checked for status); throws 400/404. */
  match(model: string | null | undefined, param = 'model'): ModelMatch {
    const all = this.instances.list();
    if (model === undefined || model === null || model === '') {
      if (all.length === 1) return { kind: 'only', name: all[0].spec.model_id, candidates: all };
      if (all.length === 0) throw new RequestError('MODEL_NOT_FOUND', 'no model is served: there are no instances', param);
      throw new RequestError('BAD_REQUEST', `\`${param}\` is required when several instances serve: set it (or the X-Model header) to one of ${this.choices(all)}`, param);
    }
    const byName = this.instances.find(model);
    if (byName !== undefined) return { kind: 'instance', name: model, candidates: [byName] };
    const byModel = all.filter((i) => i.spec.model_id === model);
    if (byModel.length > 0) return { kind: 'model_id', name: model, candidates: byModel };
    const byAlias = all.filter((i) => aliasesOf(i.spec).includes(model));
    if (byAlias.length > 0) return { kind: 'alias', name: model, candidates: byAlias };
    throw new RequestError('MODEL_NOT_FOUND', `model '${model}' is not served: no instance, model id or alias has that name; choose from ${this.choices(all)}`, param);
  }

  /** The instance to call for a match: balanced among replicas; 503 naming statuses if none serves. */
  pick(m: ModelMatch, among: readonly Instance[] = m.candidates): Instance {
    const chosen = among.length === 1 ? (canServe(among[0].status) ? among[0] : undefined) : this.resolver.pick(`${m.kind}:${m.name}`, among);
    if (chosen !== undefined) return chosen;
    const states = among.map((i) => `instance '${i.name}' is ${i.status}`).join(', ');
    throw new RequestError('INSTANCE_UNAVAILABLE', `model '${m.name}' cannot serve now: ${states}`, 'model');
  }

  /** match + pick. */
  resolve(model: string | null | undefined, param = 'model'): Instance {
    return this.pick(this.match(model, param));
  }

  instance(name: string): Instance | undefined {
    return this.instances.find(name);
  }

  /** Every model_id and alias, with its instances (those `visible` allows; default all). */
  models(visible: (i: AuthTarget) => boolean = () => true): ModelEntry[] {
    const out = new Map<string, ModelEntry>();
    const add = (id: string, kind: ModelEntry['kind'], i: Instance): void => {
      let e = out.get(id);
      if (e === undefined) out.set(id, (e = { id, kind, model_ids: [], instances: [], ready: false }));
      e.instances.push(i.name);
      if (!e.model_ids.includes(i.spec.model_id)) e.model_ids.push(i.spec.model_id);
      e.ready ||= i.status === 'running';
    };
    for (const i of this.instances.list()) {
      if (!visible(i)) continue;
      add(i.spec.model_id, 'model_id', i);
      for (const a of aliasesOf(i.spec)) if (a !== i.spec.model_id) add(a, 'alias', i);
    }
    // Catalog models not loaded now are listed too: a request starts them.
    for (const m of this.catalog?.list() ?? []) {
      if (!visible(catalogTarget(m))) continue;
      for (const [id, kind] of [[m.spec.model_id, 'model_id'], ...[m.name, ...(m.spec.aliases ?? [])].map((a) => [a, 'alias'])] as Array<[string, ModelEntry['kind']]>) {
        if (!out.has(id)) out.set(id, { id, kind, model_ids: [m.spec.model_id], instances: [], ready: false });
      }
    }
    return [...out.values()];
  }

  private choices(all: Instance[]): string {
    const names = all.map((i) => `'${i.name}'`);
    const models = this.models().map((m) => `'${m.id}'`);
    return `instances ${names.join(', ') || '(none)'}; models ${models.join(', ') || '(none)'}`;
  }
}
