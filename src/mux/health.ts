/**
 * grpc.health.v1 on the multiplexer's port, read live from the supervisor:
 * - "" (overall) and `tei_multiplexer.v1.TeiMultiplexer`: SERVING while the multiplexer serves,
 *   NOT_SERVING once it is shutting down;
 * - an instance's name: SERVING iff the instance is `running`, else NOT_SERVING;
 * - anything else: NOT_FOUND (Check), SERVICE_UNKNOWN (Watch).
 * Watch streams get the current status at once and a new message whenever it changes
 * (`changed(name)` is called on every instance transition).
 * With `open_health = false` a call carries an API key: a key restricted by `instances`/`models`
 * sees an instance it may not use as an unknown name (Check, Watch), and List leaves it out. With
 * health open, every instance name and status is visible to anyone who can connect.
 */
import * as grpc from '@grpc/grpc-js';
import { service as healthServiceDefinition } from 'grpc-health-check';
import { mayUse } from '../auth/access.js';
import type { ApiKeyGrant } from '../auth/api-keys.js';
import { grantOf } from '../auth/grpc-auth.js';
import { MUX_SERVICE } from './protos.js';
import type { InstanceDirectory } from '../routing/target.js';

type WatchStatus = 'SERVING' | 'NOT_SERVING' | 'SERVICE_UNKNOWN';

const MUX_NAMES = ['', MUX_SERVICE];

export class MuxHealth {
  private serving = true;
  /** Per service name: its watchers, each with its call's grant. */
  private readonly watchers = new Map<string, Map<(status: WatchStatus) => void, ApiKeyGrant | undefined>>();

  constructor(private readonly instances: InstanceDirectory) {}

  /** The status of a service name; undefined when the name is unknown (or an instance `grant` may not use). */
  status(service: string, grant?: ApiKeyGrant): 'SERVING' | 'NOT_SERVING' | undefined {
    if (MUX_NAMES.includes(service)) return this.serving ? 'SERVING' : 'NOT_SERVING';
    const instance = this.instances.find(service);
    if (instance === undefined || !mayUse(grant, instance)) return undefined;
    return this.serving && instance.status === 'running' ? 'SERVING' : 'NOT_SERVING';
  }

  /** Something about `service` may have changed: tell its watchers. */
  changed(service: string): void {
    const set = this.watchers.get(service);
    if (set === undefined) return;
    for (const [w, grant] of set) w(this.status(service, grant) ?? 'SERVICE_UNKNOWN');
  }

  /** Shutting down: every name NOT_SERVING. */
  stopServing(): void {
    this.serving = false;
    for (const name of this.watchers.keys()) this.changed(name);
  }

  addToServer(server: grpc.Server): void {
    server.addService(healthServiceDefinition as unknown as grpc.ServiceDefinition, {
      Check: (call: grpc.ServerUnaryCall<{ service: string }, unknown>, callback: grpc.sendUnaryData<unknown>) => {
        const status = this.status(call.request.service, grantOf(call.request));
        if (status === undefined) callback({ code: grpc.status.NOT_FOUND, details: `unknown service '${call.request.service}': not an instance name` });
        else callback(null, { status });
      },
      Watch: (call: grpc.ServerWritableStream<{ service: string }, unknown>) => {
        const service = call.request.service;
        const grant = grantOf(call.request);
        let last: WatchStatus | undefined;
        const send = (status: WatchStatus): void => {
          if (status === last) return;
          last = status;
          call.write({ status });
        };
        let set = this.watchers.get(service);
        if (set === undefined) this.watchers.set(service, (set = new Map()));
        set.set(send, grant);
        call.on('cancelled', () => {
          set.delete(send);
          if (set.size === 0 && this.watchers.get(service) === set) this.watchers.delete(service);
        });
        send(this.status(service, grant) ?? 'SERVICE_UNKNOWN');
      },
      List: (call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) => {
        const grant = grantOf(call.request);
        const statuses: Record<string, { status: string }> = {};
        for (const name of MUX_NAMES) statuses[name] = { status: this.status(name)! };
        for (const i of this.instances.list()) if (mayUse(grant, i)) statuses[i.name] = { status: this.status(i.name)! };
        callback(null, { statuses });
      },
    });
  }
}
