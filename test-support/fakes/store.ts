import { readFile, writeFile } from 'node:fs/promises'
import { Readable } from 'node:stream'

import { GitHubApiError, PERMISSION_HINT } from '../../src/storage/github/rest.js'
import type { CacheStore, EntryRemoval } from '../../src/storage/store.js'

/** Switches that make the in-memory store misbehave the way a real cache service can. */
export interface StoreFaults {
  /** available() is false: no cache service at all. */
  unavailable?: boolean
  /** readable() is false (ACTIONS_CACHE_MODE without read). */
  unreadable?: boolean
  /** writable() is false (ACTIONS_CACHE_MODE read-only). */
  readOnly?: boolean
  /** restore() throws (a download that failed midway). */
  throwOnRestore?: boolean
  /** exists() throws (the lookup before an upload failed). */
  throwOnExists?: boolean
  /** save() throws (an upload that failed). */
  throwOnSave?: boolean
  /** save() returns false without storing (the service declined the entry). */
  saveReturnsFalse?: boolean
  /** restore() of this key waits for this promise first (a slow download, released by the test). */
  gate?: { key: string; open: Promise<void> }
  /** restore() writes these bytes instead of the stored ones (a corrupt download). */
  corruptBytes?: Buffer
  /** removal.delete() is refused as GitHub refuses a job without `permissions: actions: write` (403). */
  deleteRefused?: boolean
  /** removal.keys() throws (the listing failed). */
  throwOnList?: boolean
}

/**
 * An in-memory CacheStore: archive bytes per key, in insertion order (the
 * newest entry wins a prefix lookup, as in the GitHub cache). restore()
 * matches the primary key exactly, then each restore key as a prefix; it
 * writes the entry's bytes to the archive path the core asked for, and
 * save() reads them from there, so whatever the core wrote is what is kept.
 * Its removal lists and deletes as the GitHub cache's REST API does.
 */
export class MemoryStore implements CacheStore {
  readonly entries = new Map<string, Buffer>()
  faults: StoreFaults

  constructor(faults: StoreFaults = {}) {
    this.faults = faults
  }

  available(): boolean {
    return !this.faults.unavailable
  }
  readable(): boolean {
    return !this.faults.unreadable
  }
  writable(): boolean {
    return !this.faults.readOnly
  }

  readonly removal: EntryRemoval = {
    keys: async prefix => {
      if (this.faults.throwOnList) throw new Error('GitHub API: list caches: HTTP 503 (Service Unavailable)')
      return [...this.entries.keys()].filter(k => k.startsWith(prefix))
    },
    delete: async key => {
      if (this.faults.deleteRefused) {
        throw new GitHubApiError(403, `GitHub API: delete cache: HTTP 403 (Resource not accessible by integration): ${PERMISSION_HINT}`)
      }
      this.entries.delete(key)
    }
  }

  /** Puts an entry as another job would have saved it. */
  put(key: string, bytes: Buffer): void {
    this.entries.delete(key)
    this.entries.set(key, bytes)
  }

  /** The key a lookup would match, without restoring. */
  lookup(primaryKey: string, restoreKeys: string[]): string | undefined {
    if (this.entries.has(primaryKey)) return primaryKey
    const newestFirst = [...this.entries.keys()].reverse()
    for (const prefix of restoreKeys) {
      const hit = newestFirst.find(k => k.startsWith(prefix))
      if (hit !== undefined) return hit
    }
    return undefined
  }

  async restore(archivePath: string, primaryKey: string, restoreKeys: string[]): Promise<string | undefined> {
    const key = this.lookup(primaryKey, restoreKeys)
    if (key === undefined) return undefined
    this.calls.restore++
    if (this.faults.gate?.key === key) await this.faults.gate.open
    if (this.faults.throwOnRestore) throw new Error(`download of ${key} failed: connection reset`)
    await writeFile(archivePath, this.faults.corruptBytes ?? (this.entries.get(key) as Buffer))
    return key
  }

  /** Set by streaming(): the entry as a stream, as the GitHub stream client opens it. */
  open?: CacheStore['open']
  /** How many entries were opened as streams, and downloaded to files. */
  readonly calls = { open: 0, restore: 0 }

  /**
   * Makes this store one that can stream (CacheStore.open). `cutAfter`:
   * the stream of that key fails after so many bytes (a connection reset
   * the client could not resume).
   */
  streaming(cutAfter?: { key: string; bytes: number }): this {
    this.open = async (primaryKey, restoreKeys) => {
      const key = this.lookup(primaryKey, restoreKeys)
      if (key === undefined) return undefined
      this.calls.open++
      const bytes = this.faults.corruptBytes ?? (this.entries.get(key) as Buffer)
      async function* body(): AsyncGenerator<Buffer> {
        for (let at = 0; at < bytes.length; at += 1000) {
          if (cutAfter !== undefined && cutAfter.key === key && at >= cutAfter.bytes) throw new Error('connection reset by peer (after 5 attempts)')
          yield bytes.subarray(at, at + 1000)
        }
      }
      return { matchedKey: key, body: Readable.from(body(), { objectMode: false }) }
    }
    return this
  }

  async find(_archivePath: string, primaryKey: string, restoreKeys: string[]): Promise<string | undefined> {
    return this.lookup(primaryKey, restoreKeys)
  }

  async exists(_archivePath: string, key: string): Promise<boolean> {
    if (this.faults.throwOnExists) throw new Error('lookup failed: 503 Service Unavailable')
    return this.entries.has(key)
  }

  async save(archivePath: string, key: string): Promise<boolean> {
    if (this.faults.throwOnSave) throw new Error(`upload of ${key} failed: 500 Internal Server Error`)
    if (this.faults.saveReturnsFalse || this.entries.has(key)) return false
    this.put(key, await readFile(archivePath))
    return true
  }
}
