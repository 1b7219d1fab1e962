import * as cache from '@actions/cache'

/**
 * Cache I/O: the only module that talks to @actions/cache. Each mount is one
 * entry holding one file (the mount archive); the path array must be the
 * same at restore and save because the library hashes it into the entry's
 * version, so callers take it from mountArchivePath().
 */
export interface CacheStore {
  available(): boolean
  /** Returns the matched key, or undefined on a miss. */
  restore(archivePath: string, primaryKey: string, restoreKeys: string[]): Promise<string | undefined>
  /** Returns true when the entry was stored. */
  save(archivePath: string, key: string): Promise<boolean>
}

export const actionsCache: CacheStore = {
  available: () => cache.isFeatureAvailable(),
  restore: async (archivePath, primaryKey, restoreKeys) => cache.restoreCache([archivePath], primaryKey, restoreKeys),
  save: async (archivePath, key) => (await cache.saveCache([archivePath], key)) !== -1
}
