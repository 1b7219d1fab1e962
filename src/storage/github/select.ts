import { errorMessage } from '../../errors.js'
import { log } from '../../log.js'
import { actionsCache } from '../actions-cache.js'
import { NotStreamable, type CacheStore, type EntryRemoval } from '../store.js'
import { serviceV2 } from './config.js'
import { githubRemoval } from './removal.js'
import type { RestOptions } from './rest.js'
import { GitHubStreamStore, type StreamStoreOptions } from './stream-store.js'
import { TwirpError } from './twirp.js'

export interface GitHubStoreOptions extends StreamStoreOptions {
  /** The token entries are deleted with (the github-token input); the cache itself needs none. */
  githubToken?: string
  /** Deadlines and retries of the REST calls (tests). */
  rest?: RestOptions
}

/**
 * The GitHub Actions cache: the stream client where the runner offers the
 * cache service v2, the cache library elsewhere (GHES and other v1
 * services, or BUILDKIT_MOUNT_CACHE_GITHUB_CLIENT=library). A service that
 * refuses the stream client's calls outright (no such route or method)
 * turns the rest of the job over to the library, with one line saying so.
 * Either way entries are removed through the REST API (removal.ts), with
 * the token of the options.
 */
export function githubStore(env: NodeJS.ProcessEnv = process.env, options: GitHubStoreOptions = {}, library: CacheStore = actionsCache): CacheStore {
  const { githubToken, rest, ...streamOptions } = options
  const removal = githubRemoval(githubToken, env, rest)
  const service = serviceV2(env)
  if (service === undefined) return withRemoval(library, removal)
  const stream = new GitHubStreamStore(service, streamOptions)
  const streamStore: CacheStore = stream
  let current: CacheStore = streamStore
  const guarded = async <T>(call: (store: CacheStore) => Promise<T>): Promise<T> => {
    if (current !== streamStore) return call(current)
    try {
      return await call(stream)
    } catch (error) {
      if (!refused(error)) throw error
      log.info(`The cache service refused the stream client (${errorMessage(error)}); using the cache library for this job.`)
      current = library
      return call(library)
    }
  }
  return {
    available: () => current.available(),
    readable: () => current.readable(),
    writable: () => current.writable(),
    restore: (archivePath, primaryKey, restoreKeys) => guarded(s => s.restore(archivePath, primaryKey, restoreKeys)),
    // Only while the stream client serves this job: the library downloads to a file.
    open: async (primaryKey, restoreKeys) =>
      guarded(async s => {
        if (s.open === undefined) throw new NotStreamable()
        return s.open(primaryKey, restoreKeys)
      }),
    find: (archivePath, primaryKey, restoreKeys) => guarded(s => s.find(archivePath, primaryKey, restoreKeys)),
    exists: (archivePath, key) => guarded(s => s.exists(archivePath, key)),
    save: (archivePath, key) => guarded(s => s.save(archivePath, key)),
    removal
  }
}

/** `store` with `removal` beside its own calls. */
function withRemoval(store: CacheStore, removal: EntryRemoval): CacheStore {
  return {
    available: () => store.available(),
    readable: () => store.readable(),
    writable: () => store.writable(),
    restore: (archivePath, primaryKey, restoreKeys) => store.restore(archivePath, primaryKey, restoreKeys),
    find: (archivePath, primaryKey, restoreKeys) => store.find(archivePath, primaryKey, restoreKeys),
    exists: (archivePath, key) => store.exists(archivePath, key),
    save: (archivePath, key) => store.save(archivePath, key),
    removal
  }
}

/** A Twirp answer that says the service has no such call (not a passing failure). */
function refused(error: unknown): boolean {
  return error instanceof TwirpError && (error.code === 'bad_route' || error.code === 'unimplemented' || error.status === 501)
}
