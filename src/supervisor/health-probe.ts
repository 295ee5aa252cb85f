/**
 * Asks a child whether it is ready: `grpc.health.v1.Health/Check` for the overall service; a
 * child without the health service (UNIMPLEMENTED) is asked `tei.v1.Info/Info` instead. One
 * channel per child, reused across probes.
 */
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { protoPath as healthProtoPath } from 'grpc-health-check';
import { projectPath } from '../common/paths.js';

type Unary = (req: object, md: grpc.Metadata, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: { status?: string }) => void) => grpc.ClientUnaryCall;
interface ClientCtor {
  new (address: string, creds: grpc.ChannelCredentials, options?: grpc.ChannelOptions): grpc.Client & Record<string, Unary>;
}

let ctors: { Health: ClientCtor; Info: ClientCtor } | undefined;
function clients(): { Health: ClientCtor; Info: ClientCtor } {
  if (ctors === undefined) {
    const opts: protoLoader.Options = { keepCase: true, longs: String, enums: String, defaults: true };
    const health = grpc.loadPackageDefinition(protoLoader.loadSync(healthProtoPath, opts)) as unknown as { grpc: { health: { v1: { Health: ClientCtor } } } };
    const tei = grpc.loadPackageDefinition(protoLoader.loadSync('tei/v1/tei.proto', { ...opts, includeDirs: [projectPath('proto')] })) as unknown as { tei: { v1: { Info: ClientCtor } } };
    ctors = { Health: health.grpc.health.v1.Health, Info: tei.tei.v1.Info };
  }
  return ctors;
}

export type ProbeResult = { ok: true } | { ok: false; reason: string };

export class HealthProbe {
  private readonly health: grpc.Client & Record<string, Unary>;
  private readonly info: grpc.Client & Record<string, Unary>;
  private useInfo = false;

  constructor(readonly port: number) {
    const { Health, Info } = clients();
    const address = `127.0.0.1:${port}`;
    const options = { 'grpc.enable_retries': 0, 'grpc.initial_reconnect_backoff_ms': 100, 'grpc.max_reconnect_backoff_ms': 1000 };
    this.health = new Health(address, grpc.credentials.createInsecure(), options);
    this.info = new Info(address, grpc.credentials.createInsecure(), options);
  }

  private call(client: grpc.Client & Record<string, Unary>, method: string, req: object, timeoutMs: number): Promise<{ err: grpc.ServiceError | null; res?: { status?: string } }> {
    return new Promise((resolve) => {
      client[method](req, new grpc.Metadata(), { deadline: Date.now() + timeoutMs }, (err, res) => resolve({ err, res }));
    });
  }

  /** One probe, answered within `timeoutMs`. */
  async check(timeoutMs: number): Promise<ProbeResult> {
    if (!this.useInfo) {
      const { err, res } = await this.call(this.health, 'Check', { service: '' }, timeoutMs);
      if (err === null) return res?.status === 'SERVING' ? { ok: true } : { ok: false, reason: `health ${res?.status ?? 'UNKNOWN'}` };
      if (err.code !== grpc.status.UNIMPLEMENTED) return { ok: false, reason: `health check: ${grpc.status[err.code]} ${err.details}` };
      this.useInfo = true;
    }
    const { err } = await this.call(this.info, 'Info', {}, timeoutMs);
    return err === null ? { ok: true } : { ok: false, reason: `Info: ${grpc.status[err.code]} ${err.details}` };
  }

  close(): void {
    this.health.close();
    this.info.close();
  }
}
