/**
 * grpc.health.v1 on the multiplexer's port, read live from the supervisor:
 * - "" (overall) and `tei_multiplexer.v1.TeiMultiplexer`: SERVING while the multiplexer serves,
 *   NOT_SERVING once it is shutting down;
 * - an instance's name: SERVING iff the instance is `running`, else NOT_SERVING;
 * - anything else: NOT_FOUND (Check), SERVICE_UNKNOWN (Watch).
 * Watch streams get the current status at once and a new message whenever it changes
 * (`changed(name)` is called on every instance transition).
 */
import * as grpc from '@grpc/grpc-js';
import { service as healthServiceDefinition } from 'grpc-health-check';
import { MUX_SERVICE } from './protos.js';
import type { InstanceDirectory } from './target.js';

type WatchStatus = 'SERVING' | 'NOT_SERVING' | 'SERVICE_UNKNOWN';

const MUX_NAMES = ['', MUX_SERVICE];

export class MuxHealth {
  private serving = true;
  private readonly watchers = new Map<string, Set<(status: WatchStatus) => void>>();

  constructor(private readonly instances: InstanceDirectory) {}

  /** The status of a service name; undefined when the name is unknown. */
  status(service: string): 'SERVING' | 'NOT_SERVING' | undefined {
    if (MUX_NAMES.includes(service)) return this.serving ? 'SERVING' : 'NOT_SERVING';
    const instance = this.instances.find(service);
    if (instance === undefined) return undefined;
    return this.serving && instance.status === 'running' ? 'SERVING' : 'NOT_SERVING';
  }

  /** Something about `service` may have changed: tell its watchers. */
  changed(service: string): void {
    const set = this.watchers.get(service);
    if (set === undefined) return;
    const status = this.status(service) ?? 'SERVICE_UNKNOWN';
    for (const w of set) w(status);
  }

  /** Shutting down: every name NOT_SERVING. */
  stopServing(): void {
    this.serving = false;
    for (const name of this.watchers.keys()) this.changed(name);
  }

  addToServer(server: grpc.Server): void {
    server.addService(healthServiceDefinition as unknown as grpc.ServiceDefinition, {
      Check: (call: grpc.ServerUnaryCall<{ service: string }, unknown>, callback: grpc.sendUnaryData<unknown>) => {
        const status = this.status(call.request.service);
        if (status === undefined) callback({ code: grpc.status.NOT_FOUND, details: `unknown service '${call.request.service}': not an instance name` });
        else callback(null, { status });
      },
      Watch: (call: grpc.ServerWritableStream<{ service: string }, unknown>) => {
        const service = call.request.service;
        let last: WatchStatus | undefined;
        const send = (status: WatchStatus): void => {
          if (status === last) return;
          last = status;
          call.write({ status });
        };
        let set = this.watchers.get(service);
        if (set === undefined) this.watchers.set(service, (set = new Set()));
        set.add(send);
        call.on('cancelled', () => {
          set.delete(send);
          if (set.size === 0 && this.watchers.get(service) === set) this.watchers.delete(service);
        });
        send(this.status(service) ?? 'SERVICE_UNKNOWN');
      },
      List: (_call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) => {
        const statuses: Record<string, { status: string }> = {};
        for (const name of MUX_NAMES) statuses[name] = { status: this.status(name)! };
        for (const i of this.instances.list()) statuses[i.name] = { status: this.status(i.name)! };
        callback(null, { statuses });
      },
    });
  }
}
