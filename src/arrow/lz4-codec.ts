/**
 * Arrow's LZ4_FRAME body compression codec, backed by lz4-napi's LZ4 *frame* functions
 * (`compressFrameSync` / `decompressFrameSync`; lz4-napi's plain `compress`/`uncompress` are the
 * LZ4 *block* format with a size prefix, which Arrow does not use).
 *
 * apache-arrow keeps codecs in a process-wide `compressionRegistry`: its stream reader looks up
 * the codec named by a record batch's `BodyCompression`, its writer the one named by the writer's
 * `compressionType`. `ensureLz4FrameCodec()` installs ours once; every reader and writer in
 * src/arrow calls it, so callers never have to.
 */
import { CompressionType, compressionRegistry } from 'apache-arrow';
import { compressFrameSync, decompressFrameSync } from 'lz4-napi';

/** The first four bytes of every LZ4 frame (0x184D2204, little-endian). */
export const LZ4_FRAME_MAGIC = Uint8Array.of(0x04, 0x22, 0x4d, 0x18);

/** A view of the same bytes as a Buffer (no copy); lz4-napi's sync functions are typed on Buffer. */
function asBuffer(data: Uint8Array): Buffer {
  return Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}

/** One LZ4 frame holding `data` (independent 64 KiB blocks, no checksums). */
export function lz4FrameCompress(data: Uint8Array): Uint8Array {
  return compressFrameSync(asBuffer(data));
}

/** The bytes inside one or more LZ4 frames; throws on anything that is not a valid frame. */
export function lz4FrameDecompress(data: Uint8Array): Uint8Array {
  return decompressFrameSync(asBuffer(data));
}

/** Largest output of one block, by the BD byte's block-max-size field (4..7). */
const BLOCK_MAX_BYTES: Record<number, number> = { 4: 64 << 10, 5: 256 << 10, 6: 1 << 20, 7: 4 << 20 };

/**
 * The most bytes one LZ4 frame can decompress to, read from its block headers without
 * decompressing anything: the sum over blocks of the block maximum (compressed blocks) or the
 * block's own size (stored blocks). Lets a reader refuse a decompression bomb before inflating
 * it. Throws an Error naming the problem if `data` is not exactly one well-formed frame.
 */
export function lz4FrameMaxOutput(data: Uint8Array): number {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const end = data.byteLength;
  if (end < 7 || view.getUint32(0, true) !== 0x184d2204) throw new Error('not an LZ4 frame (bad magic number)');
  const flg = data[4]!;
  const bd = data[5]!;
  if (flg >> 6 !== 1) throw new Error(`unsupported LZ4 frame version ${flg >> 6}`);
  const blockMax = BLOCK_MAX_BYTES[(bd >> 4) & 7];
  if (blockMax === undefined) throw new Error(`invalid LZ4 block size code ${(bd >> 4) & 7}`);
  const blockChecksum = (flg & 0x10) !== 0;
  const contentChecksum = (flg & 0x04) !== 0;
  let pos = 6 + ((flg & 0x08) !== 0 ? 8 : 0) + ((flg & 0x01) !== 0 ? 4 : 0) + 1; // + header checksum
  let total = 0;
  for (;;) {
    if (pos + 4 > end) throw new Error('LZ4 frame is truncated (missing end mark)');
    const word = view.getUint32(pos, true);
    pos += 4;
    if (word === 0) break; // end mark
    const size = word & 0x7fffffff;
    const stored = (word & 0x80000000) !== 0;
    if (size > blockMax) throw new Error(`LZ4 block of ${size} bytes exceeds the frame's ${blockMax}-byte block size`);
    pos += size + (blockChecksum ? 4 : 0);
    if (pos > end) throw new Error('LZ4 frame is truncated (block runs past the end)');
    total += stored ? size : blockMax;
  }
  pos += contentChecksum ? 4 : 0;
  if (pos !== end) throw new Error(pos > end ? 'LZ4 frame is truncated (content checksum)' : `${end - pos} bytes follow the LZ4 frame`);
  return total;
}

const codec = {
  encode: lz4FrameCompress,
  decode(data: Uint8Array): Uint8Array {
    try {
      return lz4FrameDecompress(data);
    } catch (err) {
      // lz4-napi's messages are bare enum names ("WrongMagicNumber"); say where they came from.
      const reason = err instanceof Error ? err.message : String(err);
      throw new Error(`LZ4_FRAME buffer could not be decompressed: ${reason}`);
    }
  },
};

/**
 * Registers the LZ4_FRAME codec with apache-arrow's compression registry unless it is already
 * there. Idempotent and cheap: safe to call before every read or write.
 */
export function ensureLz4FrameCodec(): void {
  if (compressionRegistry.get(CompressionType.LZ4_FRAME) === codec) return;
  // set() test-encodes a few bytes and checks the LZ4 frame magic number and version bits.
  compressionRegistry.set(CompressionType.LZ4_FRAME, codec);
}
