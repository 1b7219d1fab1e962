// The cache entries, shared by the protocol parts: persisted under dataDir
// (index.json + blobs/<blobId>, a file or a directory of committed blocks:
// stored-blob.ts reads both; staging in blocks/<blobId>/<hex block id> for v2
// Put Block, uploads/<blobId> for v1 chunks, and tmp/; everything is written
// there or in place, then renamed), plus GitHub's key lookup.
//
// Semantics: lookup is scoped by version: exact primary key, then the primary
// key as a prefix, then each restore key as a prefix, newest (createdAt, then
// id) wins; keys are immutable; only finalized/committed entries are visible.
// Each entry records the ref (branch) it was saved from, for the REST API's
// listing and deletion; lookups and reservations are not scoped by ref.

import { randomBytes, randomUUID } from 'node:crypto'
import * as fs from 'node:fs'
import * as path from 'node:path'
import type { CacheServiceVersion } from './env.js'

export interface MatchCandidate {
  id: number
  key: string
  version: string
  createdAt: number
}

function newest<T extends MatchCandidate>(list: readonly T[]): T | undefined {
  let best: T | undefined
  for (const e of list) {
    if (!best || e.createdAt > best.createdAt || (e.createdAt === best.createdAt && e.id > best.id)) best = e
  }
  return best
}

/**
 * GitHub's lookup, among entries of the same version: an exact match of the
 * primary key, else the newest entry whose key starts with the primary key,
 * else for each restore key in order the newest entry it is a prefix of.
 * Pass committed entries only.
 */
export function findEntry<T extends MatchCandidate>(
  entries: readonly T[],
  primaryKey: string,
  restoreKeys: readonly string[],
  version: string
): T | undefined {
  const scoped = entries.filter(e => e.version === version)
  const exact = newest(scoped.filter(e => e.key === primaryKey))
  if (exact) return exact
  for (const prefix of [primaryKey, ...restoreKeys]) {
    const hit = newest(scoped.filter(e => e.key.startsWith(prefix)))
    if (hit) return hit
  }
  return undefined
}

/** The ref of entries saved before entries had one, and the service's default (StartOptions.ref). */
export const DEFAULT_REF = 'refs/heads/main'

export interface StoredEntry {
  id: number
  key: string
  version: string
  /** The ref of the job that saved it (absent in an index written before refs were kept: DEFAULT_REF). */
  ref?: string
  blobId: string
  api: CacheServiceVersion
  state: 'pending' | 'committed'
  createdAt: number
  committedAt?: number
  /** Committed archive size. */
  size?: number
  /**
   * Size / MD5 (base64) of the uploaded blob, set when the upload completes
   * (no MD5 for a block list the client declared none for: nothing reads it back).
   */
  uploadedSize?: number
  md5?: string
  /** When a lookup last matched it (the REST API's last_accessed_at); unset until then. */
  lastAccessedAt?: number
}

/** The ref an entry was saved from. */
export const refOf = (e: StoredEntry): string => e.ref ?? DEFAULT_REF

interface IndexFile {
  formatVersion: 1
  nextId: number
  entries: StoredEntry[]
}

export interface CacheEntryInfo {
  id: number
  key: string
  version: string
  ref: string
  /** Archive size in bytes (for pending entries: bytes uploaded so far, or 0). */
  size: number
  createdAt: string
  state: 'pending' | 'committed'
  api: CacheServiceVersion
}

function writeFileAtomic(file: string, data: string): void {
  const tmp = `${file}.${process.pid}.${randomUUID()}.tmp`
  fs.writeFileSync(tmp, data)
  fs.renameSync(tmp, file)
}

const entryInfo = (e: StoredEntry): CacheEntryInfo => ({
  id: e.id,
  key: e.key,
  version: e.version,
  ref: refOf(e),
  size: e.size ?? e.uploadedSize ?? 0,
  createdAt: new Date(e.createdAt).toISOString(),
  state: e.state,
  api: e.api
})

export class Store {
  readonly indexPath: string
  entries: StoredEntry[] = []
  nextId = 1

  constructor(readonly dataDir: string) {
    for (const sub of ['blobs', 'blocks', 'uploads']) fs.mkdirSync(path.join(dataDir, sub), { recursive: true })
    fs.rmSync(path.join(dataDir, 'tmp'), { recursive: true, force: true }) // leftovers of interrupted writes
    fs.mkdirSync(path.join(dataDir, 'tmp'))
    this.indexPath = path.join(dataDir, 'index.json')
    if (fs.existsSync(this.indexPath)) {
      const index = JSON.parse(fs.readFileSync(this.indexPath, 'utf8')) as IndexFile
      if (index.formatVersion !== 1) throw new Error(`${this.indexPath}: unsupported formatVersion`)
      this.entries = index.entries
      this.nextId = index.nextId
    }
  }

  save(): void {
    const index: IndexFile = { formatVersion: 1, nextId: this.nextId, entries: this.entries }
    writeFileAtomic(this.indexPath, `${JSON.stringify(index, null, 2)}\n`)
  }

  committed(): StoredEntry[] {
    return this.entries.filter(e => e.state === 'committed')
  }

  /** Entries oldest first (createdAt, then id); committed only unless includePending. */
  list(opts?: { includePending?: boolean }): CacheEntryInfo[] {
    return this.entries
      .filter(e => opts?.includePending === true || e.state === 'committed')
      .sort((a, b) => a.createdAt - b.createdAt || a.id - b.id)
      .map(entryInfo)
  }

  create(key: string, version: string, api: CacheServiceVersion, now: number, ref: string = DEFAULT_REF): StoredEntry {
    const entry: StoredEntry = {
      id: this.nextId++,
      key,
      version,
      ref,
      blobId: randomBytes(16).toString('hex'),
      api,
      state: 'pending',
      createdAt: now
    }
    this.entries.push(entry)
    this.save()
    return entry
  }

  /** Records that a lookup matched `entry` (persisted with the index). */
  touch(entry: StoredEntry, now: number): void {
    entry.lastAccessedAt = now
    this.save()
  }

  remove(entry: StoredEntry): void {
    this.entries = this.entries.filter(e => e !== entry)
    this.save()
    for (const p of [this.blobPath(entry.blobId), this.blockDir(entry.blobId), this.uploadPath(entry.blobId)]) {
      fs.rmSync(p, { recursive: true, force: true })
    }
  }

  /** The entry's bytes: one file, or a directory of parts (read them with stored-blob.ts). */
  blobPath(blobId: string): string {
    return path.join(this.dataDir, 'blobs', blobId)
  }
  blockDir(blobId: string): string {
    return path.join(this.dataDir, 'blocks', blobId)
  }
  uploadPath(blobId: string): string {
    return path.join(this.dataDir, 'uploads', blobId)
  }
  tmpPath(): string {
    return path.join(this.dataDir, 'tmp', randomUUID())
  }
}
