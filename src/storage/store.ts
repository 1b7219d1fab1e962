import type { Readable } from 'node:stream'

/**
 * Cache I/O: the only module that talks to @actions/cache. Each mount is one
 * entry holding one file (the mount archive); the path array must be the
 * same at restore and save because the library hashes it into the entry's
 * version, so callers take it from archivePathOf() (core/job.ts).
 */
export interface CacheStore {
  available(): boolean
  /** Whether the runner lets this job read / write the cache (ACTIONS_CACHE_MODE). */
  readable(): boolean
  writable(): boolean
  /**
   * Returns the matched key, or undefined on a miss. Throws when an entry
   * was found but did not arrive as a regular file at `archivePath`
   * (download or unpacking failed, or the entry holds something else).
   */
  restore(archivePath: string, primaryKey: string, restoreKeys: string[]): Promise<string | undefined>
  /**
   * The entry restore() would match, as a stream of the mount archive that
   * is written nowhere (stores that can: the GitHub stream client). The
   * stream fails, at its end at the latest, when the entry did not arrive
   * whole; its content is unchecked (the caller checks every entry).
   */
  open?(primaryKey: string, restoreKeys: string[]): Promise<OpenedEntry | undefined>
  /** The key restore() would match, without downloading anything (lookup-only). */
  find(archivePath: string, primaryKey: string, restoreKeys: string[]): Promise<string | undefined>
  /** Whether an entry with exactly this key exists (no download). */
  exists(archivePath: string, key: string): Promise<boolean>
  /** Returns true when the entry was stored. */
  save(archivePath: string, key: string): Promise<boolean>
  /**
   * How entries are removed where the cache protocol itself cannot remove
   * them (the GitHub cache: its REST API, with a token the job must be
   * given). The self-hosted backends remove through ManagedStore's list and
   * delete instead (managed.ts); supersede.ts takes whichever a store has.
   */
  readonly removal?: EntryRemoval
}

/** Listing and deleting entries by key, in the scope the backend lets this job delete in. */
export interface EntryRemoval {
  /** Keys of the entries whose key starts with `prefix` (GitHub: entries of this job's ref), each once. */
  keys(prefix: string): Promise<string[]>
  /** Removes the entries with exactly this key in that scope; none left is not an error. */
  delete(key: string): Promise<void>
}

/** An entry being downloaded: the key it was found under and the mount archive's bytes. */
export interface OpenedEntry {
  matchedKey: string
  body: Readable
}

/** Thrown by open() of a store that cannot stream after all (the service refused the stream client): restore to a file instead. */
export class NotStreamable extends Error {
  constructor() {
    super('this cache store cannot stream entries')
    this.name = 'NotStreamable'
  }
}
