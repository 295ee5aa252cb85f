/**
 * Texts packed for a trip between threads: their UTF-8 bytes back to back and n + 1 offsets, two
 * buffers that are transferred, not copied. `TextRows` reads them back one row (or one range of
 * rows) at a time, so the thread that receives a large request makes JavaScript strings only for
 * the rows it is about to send, in bounded chunks, never for the whole request at once.
 */

export interface PackedTexts {
  /** Every text's UTF-8 bytes, in row order. */
  bytes: Uint8Array;
  /** n + 1 offsets into `bytes`: row i is bytes[offsets[i], offsets[i + 1]). */
  offsets: Float64Array;
}

/** Packs `texts` (UTF-8). */
export function packTexts(texts: readonly string[]): PackedTexts {
  let total = 0;
  for (const t of texts) total += Buffer.byteLength(t, 'utf8');
  const bytes = Buffer.allocUnsafeSlow(total);
  const offsets = new Float64Array(texts.length + 1);
  let at = 0;
  for (let i = 0; i < texts.length; i++) {
    at += bytes.write(texts[i]!, at, 'utf8');
    offsets[i + 1] = at;
  }
  return { bytes: new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength), offsets };
}

/** Read access to packed texts, row by row. */
export class TextRows {
  private readonly buf: Buffer;
  private readonly offsets: Float64Array;
  readonly length: number;

  constructor(packed: PackedTexts) {
    const { bytes, offsets } = packed;
    if (offsets.length < 1 || offsets[0] !== 0 || offsets[offsets.length - 1] !== bytes.byteLength) {
      throw new RangeError(`packed texts: offsets do not span the ${bytes.byteLength} bytes`);
    }
    this.buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.offsets = offsets;
    this.length = offsets.length - 1;
  }

  /** The packed form (its buffers; given away when transferred). */
  get packed(): PackedTexts {
    return { bytes: new Uint8Array(this.buf.buffer, this.buf.byteOffset, this.buf.byteLength), offsets: this.offsets };
  }

  /** Total UTF-8 bytes of all rows. */
  get byteLength(): number {
    return this.buf.byteLength;
  }

  /** Row i's UTF-8 length in bytes. */
  bytesOf(i: number): number {
    return this.offsets[i + 1]! - this.offsets[i]!;
  }

  /** Row i as a string. */
  text(i: number): string {
    return this.buf.toString('utf8', this.offsets[i]!, this.offsets[i + 1]!);
  }

  /** Rows [start, end) as strings. */
  slice(start: number, end: number): string[] {
    const out = new Array<string>(Math.max(0, end - start));
    for (let i = start; i < end; i++) out[i - start] = this.text(i);
    return out;
  }
}

/** Every row of `p` with `prefix` before it (UTF-8), packed anew. */
export function prefixTexts(p: PackedTexts, prefix: string): PackedTexts {
  const pre = Buffer.from(prefix, 'utf8');
  const n = p.offsets.length - 1;
  const bytes = Buffer.allocUnsafeSlow(p.bytes.byteLength + n * pre.byteLength);
  const offsets = new Float64Array(n + 1);
  const src = Buffer.from(p.bytes.buffer, p.bytes.byteOffset, p.bytes.byteLength);
  let at = 0;
  for (let i = 0; i < n; i++) {
    at += pre.copy(bytes, at);
    at += src.copy(bytes, at, p.offsets[i]!, p.offsets[i + 1]!);
    offsets[i + 1] = at;
  }
  return { bytes: new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength), offsets };
}
