// Plants crafted cache entries in the local cache service the way an attacker
// with write access to the cache scope would: through the client the action
// restores with (the stream client of service v2 by default, or the action's
// own @actions/cache store for the library path, run in the steps'
// workspace), under the path and key the action restores, so the action's own
// restore finds them. Also corrupts stored blobs and crafts raw tar bytes.
import { randomBytes } from 'node:crypto'
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'

import { archivePathOf, defaultArchiveRoot } from '../../src/core/job.js'
import { mountKeys } from '../../src/core/keys.js'
import { actionsCache } from '../../src/storage/actions-cache.js'
import { serviceV2 } from '../../src/storage/github/config.js'
import { GitHubStreamStore } from '../../src/storage/github/stream-store.js'
import { applyEnv } from '../cache-service/env.js'
import { readBlobBytes, writeBlobBytes, type CacheService } from '../cache-service/server.js'

export interface PlantTarget {
  service: CacheService
  /** RUNNER_TEMP of the steps that will restore. */
  runnerTemp: string
  /** Their workspace (and working directory), which the library's path is relative to. */
  workspace: string
  /**
   * Which client stores the entries: `stream` (what the action uses on
   * service v2; only regular files can be planted) or `library` (the
   * @actions/cache path, for steps run with BUILDKIT_MOUNT_CACHE_GITHUB_CLIENT=library).
   */
  client?: GitHubClient
}

export type GitHubClient = 'stream' | 'library'

/** The step env that makes the action use `client` for the GitHub cache. */
export function clientEnv(client: GitHubClient): Record<string, string> {
  return client === 'library' ? { BUILDKIT_MOUNT_CACHE_GITHUB_CLIENT: 'library' } : {}
}

/** The key a save of this mount would use (no key-files: `nofiles`), with a random digest. */
export function plantedKey(prefix: string, id: string, platform: string): string {
  return `${mountKeys(prefix, id, platform, '').base}-${randomBytes(8).toString('hex')}`
}

/** Runs `fn` in the workspace with the cache client pointed at the service and @actions/core's stdout captured. */
export async function withCacheClient<T>(target: PlantTarget, fn: () => Promise<T>): Promise<{ value: T; log: string }> {
  const cwd = process.cwd()
  process.chdir(target.workspace)
  const restoreEnv = applyEnv({
    ...target.service.env(),
    RUNNER_TEMP: target.runnerTemp,
    GITHUB_WORKSPACE: target.workspace,
    ACTIONS_CACHE_MODE: undefined,
    RUNNER_DEBUG: undefined
  })
  const write = process.stdout.write.bind(process.stdout)
  let log = ''
  process.stdout.write = ((chunk: string | Uint8Array): boolean => {
    log += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8')
    return true
  }) as typeof process.stdout.write
  try {
    return { value: await fn(), log }
  } finally {
    process.stdout.write = write
    restoreEnv()
    process.chdir(cwd)
  }
}

export interface Planting {
  id: string
  key: string
  /** Puts the entry's content at the archive path: a file, a directory, a symlink... */
  make: (archivePath: string) => void
}

/**
 * Stores each planting as a cache entry under its key (several at once, one
 * cache client setup), then removes what was made at the archive paths.
 */
export async function plantMany(target: PlantTarget, plantings: Planting[], concurrency = 6): Promise<void> {
  const paths = plantings.map(p => {
    const archivePath = archivePathOf(defaultArchiveRoot({ RUNNER_TEMP: target.runnerTemp }), {}, p.id)
    mkdirSync(dirname(archivePath), { recursive: true })
    rmSync(archivePath, { recursive: true, force: true })
    p.make(archivePath)
    return archivePath
  })
  try {
    const { value: failed, log } = await withCacheClient(target, async () => {
      const stream = target.client === 'library' ? undefined : serviceV2(target.service.env())
      const save = stream
        ? (archivePath: string, key: string): Promise<boolean> => new GitHubStreamStore(stream).save(archivePath, key)
        : (archivePath: string, key: string): Promise<boolean> => actionsCache.save(archivePath, key)
      const failures: string[] = []
      let next = 0
      const worker = async (): Promise<void> => {
        for (let i = next++; i < plantings.length; i = next++) {
          if (!(await save(paths[i]!, plantings[i]!.key))) failures.push(plantings[i]!.key)
        }
      }
      await Promise.all(Array.from({ length: Math.min(concurrency, plantings.length) }, worker))
      return failures
    })
    if (failed.length > 0) throw new Error(`planting ${failed.join(', ')} failed:\n${log}`)
  } finally {
    for (const p of paths) rmSync(p, { recursive: true, force: true })
  }
}

export const plant = (target: PlantTarget, id: string, key: string, make: (archivePath: string) => void): Promise<void> =>
  plantMany(target, [{ id, key, make }])

export const plantBytes = (target: PlantTarget, id: string, key: string, data: Buffer): Promise<void> =>
  plant(target, id, key, p => writeFileSync(p, data))

/** Path of the stored blob (the compressed outer archive) of the committed entry `key`: a file or a directory of parts (stored-blob.ts). */
export function blobPath(service: CacheService, key: string): string {
  const index = JSON.parse(readFileSync(join(service.dataDir, 'index.json'), 'utf8')) as { entries: { key: string; blobId: string; state: string }[] }
  const entry = index.entries.find(e => e.key === key && e.state === 'committed')
  if (!entry) throw new Error(`no committed entry ${key}`)
  return join(service.dataDir, 'blobs', entry.blobId)
}

/** Flips bytes in the middle of a stored blob (keeps its size, so the download itself succeeds). */
export function corruptBlob(service: CacheService, key: string): void {
  const file = blobPath(service, key)
  const data = readBlobBytes(file)
  const at = Math.floor(data.length / 2)
  for (let i = at; i < Math.min(data.length, at + 64); i++) data[i] = (data[i] ?? 0) ^ 0x5a
  writeBlobBytes(file, data)
}

// ---- raw tar bytes ---------------------------------------------------------

/** Recomputes the checksum of the 512-byte header at `offset`. */
export function fixChecksum(tar: Buffer, offset: number): void {
  tar.fill(0x20, offset + 148, offset + 156)
  let sum = 0
  for (let i = offset; i < offset + 512; i++) sum += tar[i] ?? 0
  tar.write(`${sum.toString(8).padStart(6, '0')}\0 `, offset + 148, 'latin1')
}

/** Offset of the header whose name field starts with `name`. */
export function headerOffset(tar: Buffer, name: string): number {
  for (let off = 0; off + 512 <= tar.length; off += 512) {
    if (tar.toString('latin1', off, off + name.length) === name && tar[off + name.length] === 0) return off
  }
  throw new Error(`no header named ${name}`)
}

/** Rewrites an octal numeric field of a header (keeping the checksum valid unless told otherwise). */
export function patchOctal(tar: Buffer, offset: number, field: 'mode' | 'uid' | 'gid' | 'size' | 'mtime', value: number, fix = true): void {
  const at = { mode: [100, 8], uid: [108, 8], gid: [116, 8], size: [124, 12], mtime: [136, 12] }[field]
  const [pos = 0, len = 0] = at
  tar.write(`${value.toString(8).padStart(len - 1, '0')}\0`, offset + pos, 'latin1')
  if (fix) fixChecksum(tar, offset)
}
