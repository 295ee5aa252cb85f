/**
 * Which instance serves a request's `model`, among those the request's API key may use: an
 * instance name (that instance), else a model_id, else an alias (`aliases` in the spec, or the
 * child's --served-model-name); a name a catalog model (src/catalog) answers to (its name,
 * model_id or an alias) adds that model's instances and the model itself. The one authorization
 * decision (src/auth/access.ts) narrows these to what the key may use before anything else:
 * balancing picks only among the allowed instances (the multiplexer's, src/mux/target.ts), and
 * an allowed catalog model that none of them serves is started first (`matchReady`). No `model`:
 * the only instance the key may use, else 400 naming the choices. Unknown: 404 listing the models
 * (a restricted key: 403 "does not exist or is not one this key may use", naming only what it may
 * use). Known but not serving: 503 naming the allowed instances' statuses.
 */
import type { FastifyRequest } from 'fastify';
import { decide, mayStart, mayUse, quoted, restrictedGrant } from '../../auth/access.js';
import type { ApiKeyGrant } from '../../auth/api-keys.js';
import { asksNoWait, NO_WAIT_HEADER, type Catalog, type ColdStartWaiter } from '../../catalog/catalog.js';
import type { CatalogModel } from '../../catalog/catalog-model.js';
import { TeiplexError } from '../../common/errors.js';
import type { Instance } from '../../supervisor/instance.js';
import { canServe } from '../../supervisor/instance-state.js';
import type { InstanceDirectory, TargetResolver } from '../../routing/target.js';
import { aliasesOf } from '../../config/spec-flags.js';
import { coldStartWaiter } from './request-context.js';

/** What a name resolved to, after the API key's decision: only what the request may use. */
export interface ModelMatch {
  /** How the name matched. */
  kind: 'instance' | 'model_id' | 'alias' | 'only';
  /** The name as the request gave it, or the only instance's model_id. */
  name: string;
  /** The instances it names that the request may use (one for an instance name). */
  candidates: Instance[];
  /** The catalog model it names, when the request may use it: started when none of `candidates` serves. */
  catalog?: CatalogModel;
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

/** The request's API key grant (undefined: no keys). */
export type GrantOf = (request: FastifyRequest) => ApiKeyGrant | undefined;

export class ModelDirectory {
  constructor(
    private readonly instances: InstanceDirectory,
    private readonly resolver: TargetResolver,
    private readonly catalog?: Catalog,
    private readonly grantOf: GrantOf = () => undefined,
    /** Longest a request waits for the manager to restore its instances at boot. */
    private readonly restoreWaitMs = 30_000,
  ) {}

  /**
   * `match` for the request's key, and when the match holds a catalog model none of whose allowed
   * instances serves: start it and wait (or, with the no-wait header, 503 at once), then match
   * again. The decision comes first: a name the key may not use starts nothing.
   */
  async matchReady(request: FastifyRequest, model: string | null | undefined, param = 'model'): Promise<ModelMatch> {
    return this.matchStarted(this.grantOf(request), model, param, !asksNoWait(request.headers[NO_WAIT_HEADER]), () => coldStartWaiter(request));
  }

  /** `matchReady` for a caller that is not a request (a batch job): its grant, whether it waits, and what it holds while it does. */
  async matchStarted(grant: ApiKeyGrant | undefined, model: string | null | undefined, param: string, wait: boolean, waiter: () => ColdStartWaiter): Promise<ModelMatch> {
    // Booting: the instances of the state file are not all known yet; wait for them.
    await this.whenRestored();
    const m = this.match(model, param, grant);
    if (m.catalog === undefined || this.catalog === undefined || m.candidates.some((i) => canServe(i.status))) return m;
    await this.catalog.ensureServing(m.catalog, wait, waiter());
    return this.match(model, param, grant);
  }

  /** Resolves once the manager has restored its instances at boot (or after the longest wait). */
  async whenRestored(): Promise<void> {
    await this.instances.whenRestored?.(this.restoreWaitMs);
  }

  /** What a name means for `grant` (not yet checked for status); throws 400/403/404. */
  match(model: string | null | undefined, param = 'model', grant?: ApiKeyGrant): ModelMatch {
    const g = restrictedGrant(grant);
    if (model === undefined || model === null || model === '') {
      const all = this.instances.list();
      const visible = g === undefined ? all : all.filter((i) => mayUse(g, i));
      if (visible.length === 1) return { kind: 'only', name: visible[0].spec.model_id, candidates: visible };
      if (visible.length > 1) throw new TeiplexError('BAD_REQUEST', `\`${param}\` is required when several instances serve: set it (or the X-Model header) to one of ${this.choices(grant)}`, { param });
      if (g === undefined) throw new TeiplexError('MODEL_NOT_FOUND', 'no model is served: there are no instances', { param });
      throw new TeiplexError('MODEL_NOT_FOUND', `\`${param}\` is required: this API key may use no instance now; set it (or the X-Model header) to one of ${this.choices(grant)}`, { param });
    }
    const byName = this.instances.find(model);
    let kind: ModelMatch['kind'] = 'instance';
    let instances: Instance[] = byName === undefined ? [] : [byName];
    const catalog = byName === undefined ? this.catalog?.lookup(model) : undefined;
    if (byName === undefined) {
      const all = this.instances.list();
      const byModel = all.filter((i) => i.spec.model_id === model);
      const byAlias = byModel.length > 0 ? [] : all.filter((i) => aliasesOf(i.spec).includes(model));
      kind = byModel.length > 0 || catalog?.spec.model_id === model ? 'model_id' : 'alias';
      const ofCatalog = catalog === undefined ? [] : all.filter((i) => i.spec.model_id === catalog.spec.model_id);
      instances = [...new Set([...byModel, ...byAlias, ...ofCatalog])];
    }
    try {
      const r = decide(
        grant,
        { asked: `model '${model}'`, instances, catalog },
        {
          notFound: () => new TeiplexError('MODEL_NOT_FOUND', `model '${model}' is not served: no instance, model id or alias has that name; choose from ${this.choices(grant)}`),
          hints: () => this.choices(grant),
        },
      );
      return { kind, name: model, candidates: [...r.instances], catalog: r.catalog };
    } catch (err) {
      throw err instanceof TeiplexError ? new TeiplexError(err.code, err.message, { param, ...(err.retryAfterSecs !== undefined ? { retryAfterSecs: err.retryAfterSecs } : {}) }) : err;
    }
  }

  /** The instance to call for a match: balanced among replicas; 503 naming statuses if none serves. */
  pick(m: ModelMatch, among: readonly Instance[] = m.candidates): Instance {
    const chosen = among.length === 1 ? (canServe(among[0].status) ? among[0] : undefined) : this.resolver.pick(`${m.kind}:${m.name}`, among);
    if (chosen !== undefined) return chosen;
    const states = among.map((i) => `instance '${i.name}' is ${i.status}`).join(', ') || 'none of its instances is running';
    throw new TeiplexError('INSTANCE_UNAVAILABLE', `model '${m.name}' cannot serve now: ${states}`, { param: 'model' });
  }

  instance(name: string): Instance | undefined {
    return this.instances.find(name);
  }

  /** Every model_id and alias that `grant` may use, with its instances (those it may use). */
  models(grant?: ApiKeyGrant): ModelEntry[] {
    const out = new Map<string, ModelEntry>();
    const add = (id: string, kind: ModelEntry['kind'], i: Instance): void => {
      let e = out.get(id);
      if (e === undefined) out.set(id, (e = { id, kind, model_ids: [], instances: [], ready: false }));
      e.instances.push(i.name);
      if (!e.model_ids.includes(i.spec.model_id)) e.model_ids.push(i.spec.model_id);
      e.ready ||= i.status === 'running';
    };
    for (const i of this.instances.list()) {
      if (!mayUse(grant, i)) continue;
      add(i.spec.model_id, 'model_id', i);
      for (const a of aliasesOf(i.spec)) if (a !== i.spec.model_id) add(a, 'alias', i);
    }
    // Catalog models not loaded now are listed too: a request starts them.
    for (const m of this.catalog?.list() ?? []) {
      if (!mayStart(grant, m)) continue;
      for (const [id, kind] of [[m.spec.model_id, 'model_id'], ...[m.name, ...(m.spec.aliases ?? [])].map((a) => [a, 'alias'])] as Array<[string, ModelEntry['kind']]>) {
        if (!out.has(id)) out.set(id, { id, kind, model_ids: [m.spec.model_id], instances: [], ready: false });
      }
    }
    return [...out.values()];
  }

  /** What `grant` may name: its instances and models. */
  private choices(grant: ApiKeyGrant | undefined): string {
    const names = this.instances.list().filter((i) => mayUse(grant, i)).map((i) => i.name);
    return `instances ${quoted(names)}; models ${quoted(this.models(grant).map((m) => m.id))}`;
  }
}
