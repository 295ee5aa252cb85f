/**
 * A child's model identity, the first part of every embedding-cache key (embedding-cache.ts):
 * a SHA-256 over what decides a child's answers: the spec's fields that reach the child
 * (runtime, command, model_id, revision, pooling, dtype, extra_args, env), what the child says of
 * its model in tei.v1 Info (model id and sha, dtype, type, max input length), and, when model_id
 * is a local folder, each of its files' name, size and modification time (the folder and one level
 * below, at most MAX_FILES). Replicas of one model share it; a restart with another revision, or
 * with files changed in the folder, gets a new one, so nothing cached before is used again.
 * Computed once per child process (its ChildClient).
 */
import { createHash } from 'node:crypto';
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import type { ChildClient } from '../child/child-client.js';
import type { InstanceSpec } from '../config/instance-spec.js';

const MAX_FILES = 256;
const known = new WeakMap<ChildClient, Promise<string>>();

export function modelIdentity(client: ChildClient, spec: InstanceSpec): Promise<string> {
  let id = known.get(client);
  if (id === undefined) {
    id = compute(client, spec);
    known.set(client, id);
    id.catch(() => known.delete(client));
  }
  return id;
}

async function compute(client: ChildClient, spec: InstanceSpec): Promise<string> {
  const info = await client.info();
  const h = createHash('sha256');
  h.update(
    JSON.stringify([
      spec.runtime ?? 'router',
      spec.command ?? null,
      spec.model_id,
      spec.revision ?? null,
      spec.pooling ?? null,
      spec.dtype ?? null,
      spec.extra_args ?? [],
      Object.entries(spec.env ?? {}).sort(),
      info.model_id,
      info.model_sha ?? null,
      info.model_dtype,
      info.model_type,
      info.max_input_length,
    ]),
  );
  for (const f of await folderFiles(spec.model_id)) h.update(`\n${f}`);
  return h.digest('base64url').slice(0, 22);
}

/** `name size mtime` of the folder's files and those one level below; none when it is not a local folder. */
async function folderFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string, depth: number): Promise<void> => {
    let names: string[];
    try {
      names = (await readdir(d)).sort();
    } catch {
      return;
    }
    for (const name of names) {
      if (out.length >= MAX_FILES) return;
      const p = path.join(d, name);
      try {
        const st = await stat(p);
        if (st.isDirectory()) {
          if (depth === 0) await walk(p, 1);
        } else {
          out.push(`${path.relative(dir, p)} ${st.size} ${st.mtimeMs}`);
        }
      } catch {
        /* gone meanwhile */
      }
    }
  };
  await walk(dir, 0);
  return out;
}
