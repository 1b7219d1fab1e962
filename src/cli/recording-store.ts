import type { CacheStore } from '../cache.js'

/** What the store said about one mount's save, for the save command's result. */
export type StoreOutcome = 'saved' | 'exists' | 'not-saved' | 'failed'

export interface StoreRecord {
  key: string
  outcome: StoreOutcome
}

/**
 * Wraps a store to record, per archive path (one per mount), what saveMounts
 * asked and what came back: the core reports through log lines, and --json
 * wants the same facts as data. A mount with no record had nothing to save
 * (empty, unchanged since restore, over max-size, or not extracted).
 */
export function recordingStore(inner: CacheStore): { store: CacheStore; records: Map<string, StoreRecord> } {
  const records = new Map<string, StoreRecord>()
  const store: CacheStore = {
    available: () => inner.available(),
    readable: () => inner.readable(),
    writable: () => inner.writable(),
    restore: async (archivePath, primaryKey, restoreKeys) => inner.restore(archivePath, primaryKey, restoreKeys),
    exists: async (archivePath, key) => {
      const found = await inner.exists(archivePath, key)
      if (found) records.set(archivePath, { key, outcome: 'exists' })
      return found
    },
    save: async (archivePath, key) => {
      try {
        const saved = await inner.save(archivePath, key)
        records.set(archivePath, { key, outcome: saved ? 'saved' : 'not-saved' })
        return saved
      } catch (error) {
        records.set(archivePath, { key, outcome: 'failed' })
        throw error
      }
    }
  }
  return { store, records }
}
