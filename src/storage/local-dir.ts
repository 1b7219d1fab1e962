import { createHash, randomUUID } from 'node:crypto'
import { createWriteStream } from 'node:fs'
import { link, mkdir, open, readdir, readFile, rename, rm, stat, utimes, writeFile } from 'node:fs/promises'
import { basename, join } from 'node:path'
import { pipeline } from 'node:stream/promises'

import { chooseCodec, CODEC_SUFFIX, CODECS, compressFile, decompressToFile, type Codec } from './compression.js'
import { matchEntry } from './lookup.js'
import type { ManagedStore, StoredEntry } from './managed.js'
import { metered, progressMeter } from './progress.js'

/**
 * `dir:/path`: entries in a directory (a laptop's cache dir, a CI agent's
 * disk, an NFS share). Each entry is a compressed archive plus a JSON
 * sidecar naming it; the sidecar is the commit point. Archives get a unique
 * name and are complete and synced before their sidecar is created with
 * link(2), which fails when the sidecar exists: two processes saving the same
 * key never tear an archive, the first complete one wins and the second is a
 * no-op. Readers only follow sidecars, so they never see a partial archive.
 */
export interface LocalDirOptions {
  /** Compression of new entries; default zstd when on PATH, else gzip. */
  codec?: Codec
  now?: () => Date
}

/** The sidecar's content. */
interface EntryRecord {
  version: 1
  key: string
  /** Archive file name in the store directory. */
  archive: string
  compression: Codec
  size: number
  /** ISO time of the save. */
  created: string
}

interface LocalEntry extends StoredEntry {
  compression: Codec
  archive: string
  sidecar: string
}

const SIDECAR_SUFFIX = '.json'
const TEMP_DIR = '.tmp'
/** Leftovers of a save that died are swept by prune once they are this old. */
const ORPHAN_AGE_MS = 60 * 60 * 1000

/** A file-name-safe, collision-free (also on case-insensitive filesystems) stem for a key. */
export function fileStem(key: string): string {
  const safe = key
    .replace(/[^A-Za-z0-9._-]/g, '_')
    .replace(/^\.+/, '_')
    .slice(0, 150)
  return `${safe}.${createHash('sha256').update(key).digest('hex').slice(0, 12)}`
}

export class LocalDirStore implements ManagedStore {
  readonly location: string

  constructor(
    readonly root: string,
    private readonly options: LocalDirOptions = {}
  ) {
    this.location = `dir:${root}`
  }

  available(): boolean {
    return true
  }

  readable(): boolean {
    return true
  }

  writable(): boolean {
    return true
  }

  async restore(archivePath: string, primaryKey: string, restoreKeys: string[]): Promise<string | undefined> {
    const hit = matchEntry(await this.entries(), primaryKey, restoreKeys)
    if (!hit) return undefined
    // Opened before streaming, so an entry pruned meanwhile is a clean error.
    const handle = await open(join(this.root, hit.archive), 'r')
    const meter = progressMeter({ label: `${basename(archivePath, '.tar')}: reading`, total: hit.size })
    await decompressToFile(metered(handle.createReadStream(), meter), hit.compression, archivePath)
    // The sidecar's mtime is the entry's last use, which prune goes by.
    const now = this.now()
    await utimes(join(this.root, hit.sidecar), now, now).catch(() => undefined)
    return hit.key
  }

  async find(_archivePath: string, primaryKey: string, restoreKeys: string[]): Promise<string | undefined> {
    return matchEntry(await this.entries(), primaryKey, restoreKeys)?.key
  }

  async exists(_archivePath: string, key: string): Promise<boolean> {
    const entry = await this.entry(`${fileStem(key)}${SIDECAR_SUFFIX}`)
    if (entry?.key !== key) return false
    return stat(join(this.root, entry.archive)).then(
      () => true,
      () => false
    )
  }

  async save(archivePath: string, key: string): Promise<boolean> {
    const stem = fileStem(key)
    const sidecar = join(this.root, `${stem}${SIDECAR_SUFFIX}`)
    const temp = join(this.root, TEMP_DIR)
    await mkdir(temp, { recursive: true })
    const codec = this.options.codec ?? (await chooseCodec(archivePath))
    const unique = `${stem}.${randomUUID().slice(0, 8)}`
    const archive = `${unique}${CODEC_SUFFIX[codec]}`
    const tempArchive = join(temp, archive)
    const tempSidecar = join(temp, `${unique}${SIDECAR_SUFFIX}`)
    try {
      const meter = progressMeter({ label: `${basename(archivePath, '.tar')}: writing`, total: (await stat(archivePath)).size })
      await compressFile(archivePath, codec, compressed => pipeline(compressed, createWriteStream(tempArchive)), meter)
      await syncFile(tempArchive)
      const size = (await stat(tempArchive)).size
      await rename(tempArchive, join(this.root, archive))
      const created = this.now()
      const record: EntryRecord = { version: 1, key, archive, compression: codec, size, created: created.toISOString() }
      await writeFile(tempSidecar, JSON.stringify(record))
      // The sidecar's mtime is the last use: a new entry starts unused since its save.
      await utimes(tempSidecar, created, created)
      await syncFile(tempSidecar)
      if (await createOnce(tempSidecar, sidecar)) return true
      // Another process committed this key first: its archive stands, ours goes.
      await rm(join(this.root, archive), { force: true })
      return false
    } finally {
      await Promise.all([rm(tempArchive, { force: true }), rm(tempSidecar, { force: true })])
    }
  }

  async list(prefix: string): Promise<StoredEntry[]> {
    return (await this.entries()).filter(e => e.key.startsWith(prefix))
  }

  async delete(key: string): Promise<void> {
    const name = `${fileStem(key)}${SIDECAR_SUFFIX}`
    const entry = await this.entry(name)
    // The sidecar goes first: from then on no reader follows it to the archive.
    await rm(join(this.root, name), { force: true })
    if (entry) await rm(join(this.root, entry.archive), { force: true })
  }

  /**
   * Removes what interrupted saves left behind: temp files and archives no
   * sidecar names, once they are old enough not to belong to a save in
   * progress. Returns the bytes freed.
   */
  async sweep(): Promise<number> {
    const cutoff = this.now().getTime() - ORPHAN_AGE_MS
    const named = new Set((await this.entries()).map(e => e.archive))
    let freed = 0
    const candidates = [
      ...(await names(join(this.root, TEMP_DIR))).map(n => join(this.root, TEMP_DIR, n)),
      ...(await names(this.root)).filter(n => !n.endsWith(SIDECAR_SUFFIX) && !n.startsWith('.') && !named.has(n)).map(n => join(this.root, n))
    ]
    for (const path of candidates) {
      const s = await stat(path).catch(() => undefined)
      if (!s?.isFile() || s.mtimeMs > cutoff) continue
      await rm(path, { force: true })
      freed += s.size
    }
    return freed
  }

  private now(): Date {
    return this.options.now?.() ?? new Date()
  }

  /** Every committed entry; unreadable sidecars are skipped (a reader must never fail on one). */
  private async entries(): Promise<LocalEntry[]> {
    const sidecars = (await names(this.root)).filter(n => n.endsWith(SIDECAR_SUFFIX) && !n.startsWith('.'))
    const entries = await Promise.all(sidecars.map(n => this.entry(n)))
    return entries.filter((e): e is LocalEntry => e !== undefined)
  }

  private async entry(sidecar: string): Promise<LocalEntry | undefined> {
    try {
      const path = join(this.root, sidecar)
      const [text, s] = await Promise.all([readFile(path, 'utf8'), stat(path)])
      const r = JSON.parse(text) as Partial<EntryRecord>
      if (r.version !== 1 || typeof r.key !== 'string' || typeof r.archive !== 'string' || typeof r.created !== 'string') return undefined
      if (r.compression === undefined || !CODECS.includes(r.compression)) return undefined
      const created = new Date(r.created)
      return {
        key: r.key,
        size: r.size ?? 0,
        created,
        lastUsed: s.mtime > created ? s.mtime : created,
        compression: r.compression,
        archive: basename(r.archive),
        sidecar
      }
    } catch {
      return undefined
    }
  }
}

/** File names in a directory; none when it does not exist yet. */
async function names(dir: string): Promise<string[]> {
  try {
    return await readdir(dir)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return []
    throw error
  }
}

async function syncFile(path: string): Promise<void> {
  const handle = await open(path, 'r+')
  try {
    await handle.sync()
  } finally {
    await handle.close()
  }
}

/**
 * Creates `dest` with the content of `source` unless it exists, atomically:
 * true when this call created it. link(2) is atomic and never replaces; on
 * filesystems without hard links an exclusive create does the same job.
 */
async function createOnce(source: string, dest: string): Promise<boolean> {
  try {
    await link(source, dest)
    return true
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    if (code === 'EEXIST') return false
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'ENOSYS' && code !== 'EOPNOTSUPP') throw error
  }
  try {
    await writeFile(dest, await readFile(source), { flag: 'wx' })
    return true
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false
    throw error
  }
}
