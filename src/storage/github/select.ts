import { errorMessage } from '../../errors.js'
import { log } from '../../log.js'
import { actionsCache } from '../actions-cache.js'
import type { CacheStore } from '../store.js'
import { serviceV2 } from './config.js'
import { GitHubStreamStore, type StreamStoreOptions } from './stream-store.js'
import { TwirpError } from './twirp.js'

/**
 * The GitHub Actions cache: the stream client where the runner offers the
 * cache service v2, the cache library elsewhere (GHES and other v1
 * services, or BUILDKIT_MOUNT_CACHE_GITHUB_CLIENT=library). A service that
 * refuses the stream client's calls outright (no such route or method)
 * turns the rest of the job over to the library, with one line saying so.
 */
export function githubStore(env: NodeJS.ProcessEnv = process.env, options: StreamStoreOptions = {}, library: CacheStore = actionsCache): CacheStore {
  const service = serviceV2(env)
  if (service === undefined) return library
  const stream = new GitHubStreamStore(service, options)
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
    find: (archivePath, primaryKey, restoreKeys) => guarded(s => s.find(archivePath, primaryKey, restoreKeys)),
    exists: (archivePath, key) => guarded(s => s.exists(archivePath, key)),
    save: (archivePath, key) => guarded(s => s.save(archivePath, key))
  }
}

/** A Twirp answer that says the service has no such call (not a passing failure). */
function refused(error: unknown): boolean {
  return error instanceof TwirpError && (error.code === 'bad_route' || error.code === 'unimplemented' || error.status === 501)
}
