import { rmdirSync } from 'node:fs'
import { copyFile, lstat, mkdir, rename, rm } from 'node:fs/promises'
import { basename, dirname, join, resolve } from 'node:path'

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

/**
 * The directory, in the workspace, that archives pass through on their way
 * to and from the library (for the length of one library call).
 */
export const LIBRARY_DIR = '.buildkit-mount-cache-archives'

/** How one archive is handed to @actions/cache. */
export interface LibraryPath {
  /**
   * The path string the library is given. It hashes it, as given, into the
   * entry's version, and at save globs it from the working directory (a
   * relative pattern may not contain `..`); its tar holds the file under its
   * path relative to GITHUB_WORKSPACE (else the working directory) and
   * unpacks it there.
   */
  path: string
  /** Where the library reads (save) and unpacks (restore) the archive, when not at the archive path itself. */
  staged?: string
}

/**
 * The library's view of an archive. Steps run in the workspace, so the
 * archive passes through `<workspace>/.buildkit-mount-cache-archives/<id>.tar`
 * and the library gets that path relative to the workspace: the same string
 * on every runner whatever its install directory, RUNNER_TEMP or workspace,
 * so the version, the tar member and the place it unpacks to agree
 * everywhere. (Entries saved while the version hashed the absolute archive
 * path under RUNNER_TEMP have another version: they simply miss.) A process
 * whose working directory is not the library's workspace (a CLI run in a
 * subdirectory) would unpack another run's member elsewhere, so it hands over
 * the absolute archive path instead: a version of that location only.
 */
export function libraryPathOf(archivePath: string, env: NodeJS.ProcessEnv = process.env, cwd: string = process.cwd()): LibraryPath {
  const workspace = resolve(env.GITHUB_WORKSPACE ?? cwd)
  if (workspace !== resolve(cwd)) return { path: archivePath }
  const path = `${LIBRARY_DIR}/${basename(archivePath)}`
  return { path, staged: join(workspace, path) }
}

export const actionsCache: CacheStore = {
  available: () => cache.isFeatureAvailable(),
  readable: () => cacheModeAllows('read'),
  writable: () => cacheModeAllows('write'),
  restore: async (archivePath, primaryKey, restoreKeys) => quiet(async () => restoreArchive(archivePath, primaryKey, restoreKeys)),
  find: async (archivePath, primaryKey, restoreKeys) =>
    quiet(async () => cache.restoreCache([libraryPathOf(archivePath).path], primaryKey, restoreKeys, { lookupOnly: true })),
  exists: async (archivePath, key) =>
    quiet(async () => (await cache.restoreCache([libraryPathOf(archivePath).path], key, [], { lookupOnly: true })) === key),
  save: async (archivePath, key) => quiet(async () => saveArchive(archivePath, key))
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
 * a hit, the library's path must hold a regular file: the library unpacks
 * whatever the entry holds there (a directory, a symlink to any file of the
 * runner, a FIFO), and that is removed, not read. The file then moves to the
 * archive path.
 */
async function restoreArchive(archivePath: string, primaryKey: string, restoreKeys: string[]): Promise<string | undefined> {
  const lib = libraryPathOf(archivePath)
  const found = await cache.restoreCache([lib.path], primaryKey, restoreKeys, { lookupOnly: true })
  if (found === undefined) return undefined
  const landing = lib.staged ?? archivePath
  return withStaging(lib, async () => {
    try {
      await rm(landing, { recursive: true, force: true })
      const matched = await cache.restoreCache([lib.path], primaryKey, restoreKeys)
      if (matched === undefined) throw new Error(`${found} was found but could not be downloaded or unpacked (see the cache warning above)`)
      const kind = await fileKind(landing)
      if (kind !== 'file') throw new Error(`${matched} does not hold a mount archive (${kind} at the archive path)`)
      if (landing !== archivePath) await moveFile(landing, archivePath)
      return matched
    } catch (error) {
      await rm(archivePath, { recursive: true, force: true })
      throw error
    }
  })
}

/** Saves the archive from the library's path; the archive is back at its own path afterwards. */
async function saveArchive(archivePath: string, key: string): Promise<boolean> {
  const lib = libraryPathOf(archivePath)
  const staged = lib.staged
  if (staged === undefined) return (await cache.saveCache([lib.path], key)) !== -1
  return withStaging(lib, async () => {
    await rm(staged, { recursive: true, force: true })
    const renamed = await stageRename(archivePath, staged).then(
      () => true,
      async (error: NodeJS.ErrnoException) => {
        if (error.code !== 'EXDEV') throw error
        await copyFile(archivePath, staged)
        return false
      }
    )
    try {
      return (await cache.saveCache([lib.path], key)) !== -1
    } finally {
      if (renamed) await rename(staged, archivePath)
    }
  })
}

/** Moves a file, copying it across file systems. */
async function moveFile(from: string, to: string): Promise<void> {
  await mkdir(dirname(to), { recursive: true })
  try {
    await rename(from, to)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EXDEV') throw error
    await copyFile(from, to)
    await rm(from, { force: true })
  }
}

/**
 * Steps of other processes sharing the workspace (parallel jobs of a
 * self-hosted runner, tests) remove the library's directory when their last
 * call ends, which can land between our mkdir and our use of it (or inside
 * a recursive mkdir, as ENOENT): each is tried again a few times.
 */
const SHARED_DIR_TRIES = 5

async function ensureDir(dir: string): Promise<void> {
  for (let i = 1; ; i++) {
    try {
      await mkdir(dir, { recursive: true })
      return
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT' || i >= SHARED_DIR_TRIES) throw error
    }
  }
}

/** Renames into the shared directory, making it again when another process removed it meanwhile. */
async function stageRename(from: string, to: string): Promise<void> {
  for (let i = 1; ; i++) {
    try {
      await rename(from, to)
      return
    } catch (error) {
      const gone = (error as NodeJS.ErrnoException).code === 'ENOENT' && (await fileKind(from)) === 'file'
      if (!gone || i >= SHARED_DIR_TRIES) throw error
      await ensureDir(dirname(to))
    }
  }
}

let staging = 0

/**
 * Runs `fn` with the library's directory in place, and removes it (with
 * whatever is left at this archive's staged path) when the last call of the
 * process ends: nothing stays in the workspace, which is usually the build
 * context. The removal is synchronous, so no other call can slip between
 * the count reaching zero and the directory going.
 */
async function withStaging<T>(lib: LibraryPath, fn: () => Promise<T>): Promise<T> {
  const staged = lib.staged
  if (staged === undefined) return fn()
  staging++
  try {
    await ensureDir(dirname(staged))
    return await fn()
  } finally {
    await rm(staged, { recursive: true, force: true })
    if (--staging === 0) {
      try {
        rmdirSync(dirname(staged))
      } catch {
        // Not empty (another process's archive) or gone already.
      }
    }
  }
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
