import * as cache from '@actions/cache'

/**
 * Cache I/O: the only module that talks to @actions/cache. Each mount is one
 * entry holding one file (the mount archive); the path array must be the
 * same at restore and save because the library hashes it into the entry's
 * version, so callers take it from mountArchivePath().
 */
export interface CacheStore {
  available(): boolean
  /** Whether the runner lets this job read / write the cache (ACTIONS_CACHE_MODE). */
  readable(): boolean
  writable(): boolean
  /** Returns the matched key, or undefined on a miss. */
  restore(archivePath: string, primaryKey: string, restoreKeys: string[]): Promise<string | undefined>
  /** Whether an entry with exactly this key exists (no download). */
  exists(archivePath: string, key: string): Promise<boolean>
  /** Returns true when the entry was stored. */
  save(archivePath: string, key: string): Promise<boolean>
}

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
  restore: async (archivePath, primaryKey, restoreKeys) => cache.restoreCache([archivePath], primaryKey, restoreKeys),
  exists: async (archivePath, key) => (await cache.restoreCache([archivePath], key, [], { lookupOnly: true })) === key,
  save: async (archivePath, key) => (await cache.saveCache([archivePath], key)) !== -1
}
