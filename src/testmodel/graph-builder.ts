/**
 * Builds an ONNX graph node by node: named initializers (weights), constants and operators,
 * then serializes it, with the weights inline or in an external data file.
 */
import { AttributeType, DataType, encodeModel, type AttributeMessage, type NodeMessage, type TensorMessage, type ValueInfoMessage } from './onnx-proto.js';

export type Attr = number | number[] | { float: number };

interface Initializer {
  name: string;
  dims: number[];
  data: Float32Array | BigInt64Array;
}

export interface GraphIo {
  name: string;
  elemType: 'float32' | 'int64';
  /** Numbers are fixed sizes, strings symbolic ones (e.g. 'batch_size'). */
  shape: Array<number | string>;
}

/** Weights at least this large go to the external data file when one is asked for. */
const EXTERNAL_MIN_BYTES = 1024;
/** Offsets in the external data file are aligned like ONNX's own writer does, for mmap. */
const EXTERNAL_ALIGN = 4096;

function attribute(name: string, value: Attr): AttributeMessage {
  if (Array.isArray(value)) return { name, type: AttributeType.INTS, ints: value };
  if (typeof value === 'object') return { name, type: AttributeType.FLOAT, f: value.float };
  return { name, type: AttributeType.INT, i: value };
}

function bytesOf(data: Float32Array | BigInt64Array): Uint8Array {
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

function valueInfo(io: GraphIo): ValueInfoMessage {
  return {
    name: io.name,
    type: {
      tensorType: {
        elemType: io.elemType === 'float32' ? DataType.FLOAT : DataType.INT64,
        shape: { dim: io.shape.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
      },
    },
  };
}

export interface SerializedModel {
  onnx: Uint8Array;
  /** Present when the weights were asked to live outside the graph file. */
  externalData?: Uint8Array;
}

export class GraphBuilder {
  private readonly nodes: NodeMessage[] = [];
  private readonly initializers: Initializer[] = [];
  private readonly names = new Set<string>();
  private counter = 0;

  private unique(base: string): string {
    let name = base;
    while (this.names.has(name)) name = `${base}_${++this.counter}`;
    this.names.add(name);
    return name;
  }

  /** A float weight of the given shape. */
  weight(name: string, dims: number[], data: Float32Array): string {
    const size = dims.reduce((a, b) => a * b, 1);
    if (data.length !== size) throw new Error(`weight ${name}: ${data.length} values for shape [${dims.join(', ')}]`);
    const unique = this.unique(name);
    this.initializers.push({ name: unique, dims, data });
    return unique;
  }

  /** An int64 constant (shapes, axes, indices); a scalar when `dims` is []. */
  int64(name: string, values: number[], dims: number[] = [values.length]): string {
    const unique = this.unique(name);
    this.initializers.push({ name: unique, dims, data: BigInt64Array.from(values.map(BigInt)) });
    return unique;
  }

  /** A float scalar constant. */
  scalar(name: string, value: number): string {
    const unique = this.unique(name);
    this.initializers.push({ name: unique, dims: [], data: Float32Array.of(value) });
    return unique;
  }

  /** Add one operator with a single output and return the output's name. */
  op(opType: string, inputs: string[], attrs: Record<string, Attr> = {}, output?: string): string {
    const out = output ?? this.unique(`${opType.toLowerCase()}_out`);
    if (output !== undefined) this.names.add(output);
    this.nodes.push({
      input: inputs,
      output: [out],
      name: this.unique(`${opType}_${this.nodes.length}`),
      opType,
      attribute: Object.entries(attrs).map(([k, v]) => attribute(k, v)),
    });
    return out;
  }

  /** Number of weight values (floats) in the graph. */
  get parameterCount(): number {
    let n = 0;
    for (const i of this.initializers) if (i.data instanceof Float32Array) n += i.data.length;
    return n;
  }

  /**
   * Serialize. With `externalDataFile` set (a file name next to the .onnx file), every weight of
   * at least 1 KiB is written there at a 4 KiB-aligned offset and referenced from the graph.
   */
  serialize(opts: { inputs: GraphIo[]; outputs: GraphIo[]; opset: number; producer: string; version: string; externalDataFile?: string; metadata?: Record<string, string> }): SerializedModel {
    const tensors: TensorMessage[] = [];
    const external: Uint8Array[] = [];
    let offset = 0;
    for (const init of this.initializers) {
      const dataType = init.data instanceof Float32Array ? DataType.FLOAT : DataType.INT64;
      const bytes = bytesOf(init.data);
      if (opts.externalDataFile !== undefined && bytes.byteLength >= EXTERNAL_MIN_BYTES) {
        const start = Math.ceil(offset / EXTERNAL_ALIGN) * EXTERNAL_ALIGN;
        if (start > offset) external.push(new Uint8Array(start - offset));
        external.push(bytes);
        offset = start + bytes.byteLength;
        tensors.push({
          name: init.name,
          dims: init.dims,
          dataType,
          dataLocation: 1,
          externalData: [
            { key: 'location', value: opts.externalDataFile },
            { key: 'offset', value: String(start) },
            { key: 'length', value: String(bytes.byteLength) },
          ],
        });
      } else {
        tensors.push({ name: init.name, dims: init.dims, dataType, rawData: bytes });
      }
    }
    const onnx = encodeModel({
      irVersion: 8,
      opsetImport: [{ domain: '', version: opts.opset }],
      producerName: opts.producer,
      producerVersion: opts.version,
      graph: {
        node: this.nodes,
        name: 'main_graph',
        initializer: tensors,
        input: opts.inputs.map(valueInfo),
        output: opts.outputs.map(valueInfo),
      },
      metadataProps: Object.entries(opts.metadata ?? {}).map(([key, value]) => ({ key, value })),
    });
    if (opts.externalDataFile === undefined) return { onnx };
    const data = new Uint8Array(offset);
    let at = 0;
    for (const part of external) {
      data.set(part, at);
      at += part.byteLength;
    }
    return { onnx, externalData: data };
  }
}
