import type { CacheStore } from './store.js'
import type { Codec } from './compression.js'

/** One stored entry, as `ls` shows it and `prune` judges it. */
export interface StoredEntry {
  key: string
  /** Bytes stored (the compressed archive). */
  size: number
  /** When the entry was saved: restore lookups prefer the newest. */
  created: Date
  /** When it was last restored where the backend records that (local dir); else `created`. */
  lastUsed: Date
  /** Unknown in an S3 listing (object metadata is not listed). */
  compression?: Codec
}

/**
 * A store the CLI can also list and prune. The GitHub cache evicts entries
 * by itself and a job token cannot list them, so only the self-hosted
 * backends (local directory, S3) implement it.
 */
export interface ManagedStore extends CacheStore {
  /** Where the entries live, for log lines (e.g. `dir:/home/me/.cache/…`). */
  readonly location: string
  /** Entries whose key starts with `prefix`, in no particular order. */
  list(prefix: string): Promise<StoredEntry[]>
  /** Removes one entry; an entry that is already gone is not an error. */
  delete(key: string): Promise<void>
  /** Removes leftovers of interrupted saves, where the backend can have any; returns the bytes freed. */
  sweep?(): Promise<number>
}

export function isManagedStore(store: CacheStore): store is ManagedStore {
  const s = store as Partial<ManagedStore>
  return typeof s.list === 'function' && typeof s.delete === 'function'
}
