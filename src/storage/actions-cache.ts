import { lstat, rm } from 'node:fs/promises'

import * as cache from '@actions/cache'

import { withoutLines } from '../log.js'
import type { CacheStore } from './store.js'

const KNOWN_MODES = ['none', 'read', 'write', 'write-only']

/**
 * The runner's ACTIONS_CACHE_MODE (e.g. `read` for pull requests from forks).
 * Unknown or unset values allow everything, as the cache library does.
 */
export function cacheModeAllows(access: 'read' | 'write', mode: string = process.env.ACTIONS_CACHE_MODE ?? ''): boolean {
  const m = mode.trim().toLowerCase()
  if (!KNOWN_MODES.includes(m)) return true
  return access === 'read' ? m === 'read' || m === 'write' : m === 'write' || m === 'write-only'
}

export const actionsCache: CacheStore = {
  available: () => cache.isFeatureAvailable(),
  readable: () => cacheModeAllows('read'),
  writable: () => cacheModeAllows('write'),
  restore: async (archivePath, primaryKey, restoreKeys) => quiet(async () => restoreArchive(archivePath, primaryKey, restoreKeys)),
  exists: async (archivePath, key) => quiet(async () => (await cache.restoreCache([archivePath], key, [], { lookupOnly: true })) === key),
  save: async (archivePath, key) => quiet(async () => (await cache.saveCache([archivePath], key)) !== -1)
}

/**
 * The library's lines that our own log line for the mount states once:
 * which key matched (it says so twice per restore, for the lookup and the
 * download), that the lookup skipped the download, that it restored or saved.
 * Its progress (`Received …`, `Sent …`), the archive size and every warning stay.
 */
const LIBRARY_REPEATS = /^(Cache hit for( restore-key)?: |Lookup only - skipping download$|Cache restored successfully$|Cache saved successfully$)/

const quiet = async <T>(fn: () => Promise<T>): Promise<T> => withoutLines(LIBRARY_REPEATS, fn)

/**
 * Looks the entry up first, then restores it: the library reports a failed
 * download or unpacking (a corrupt, truncated or vanished entry, a full
 * disk) as a warning and a miss, which would read as "nothing cached". After
 * a hit, the archive path must hold a regular file: the library unpacks
 * whatever the entry holds there (a directory, a symlink to any file of the
 * runner, a FIFO), and that is removed, not read.
 */
async function restoreArchive(archivePath: string, primaryKey: string, restoreKeys: string[]): Promise<string | undefined> {
  const found = await cache.restoreCache([archivePath], primaryKey, restoreKeys, { lookupOnly: true })
  if (found === undefined) return undefined
  const matched = await cache.restoreCache([archivePath], primaryKey, restoreKeys)
  if (matched === undefined) {
    await rm(archivePath, { recursive: true, force: true })
    throw new Error(`${found} was found but could not be downloaded or unpacked (see the cache warning above)`)
  }
  const kind = await fileKind(archivePath)
  if (kind !== 'file') {
    await rm(archivePath, { recursive: true, force: true })
    throw new Error(`${matched} does not hold a mount archive (${kind} at the archive path)`)
  }
  return matched
}

async function fileKind(path: string): Promise<string> {
  try {
    const st = await lstat(path)
    if (st.isFile()) return 'file'
    if (st.isDirectory()) return 'a directory'
    if (st.isSymbolicLink()) return 'a symlink'
    return 'a special file'
  } catch {
    return 'nothing'
  }
}
