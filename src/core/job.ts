import { tmpdir } from 'node:os'
import { join } from 'node:path'

import type { RouteChoice, RouteRecord } from '../builder/route.js'
import type { ClientKind } from '../builder/engine.js'
import { idSegment } from './keys.js'
import type { MountState } from './status.js'

/**
 * Everything post needs from main: the plan (keys frozen in main) and what
 * main did with each mount. Saved as JSON in the step state (or handed to
 * the save/ sub-action as its `state` input) and parsed field by field on
 * load (action/state.ts). It names no path and no program: archive paths
 * are derived from the mount ids, the engine is resolved again.
 */
export interface JobState {
  version: 2
  engine: EngineRecord
  utilityImage: string
  /** false: the step only restores (input save: false). */
  save: boolean
  /** BUILDKIT_CACHE_MOUNT_NS: the generated builds pass it too, to select the same caches. */
  cacheNamespace?: string
  /** How the mounts move (input extract-via). */
  extractVia: RouteChoice
  /** Largest tree a restored archive may expand to (input max-restore-size). */
  maxRestoreBytes: number
  /** Step-wide size cap in bytes. */
  maxSize?: number
  /** Input lookup-only: the entries were looked up, nothing was injected, so nothing is saved either. */
  lookupOnly?: true
  /** false: every save is a full one (input deltas: false). */
  deltas?: false
  /** Input exact-match: only entries of the same key files were looked for (MountKeys.restoreKeys[0]). */
  exactMatch?: true
  /**
   * Input delete-superseded: when a new full entry replaces a mount's chain,
   * its old base and deltas are deleted (storage/supersede.ts). The token
   * that takes on the GitHub cache is never in the state: the saving step
   * reads it (input github-token) and hands it to the store.
   */
  deleteSuperseded?: true
  mounts: MountState[]
  /** Milliseconds the inject build took, when one ran. */
  injectMs?: number
  /** The route inject took, when it ran. */
  inject?: RouteRecord
}

/** Which client and builder the generated builds use; the docker program is found again in each phase. */
export interface EngineRecord {
  client: ClientKind
  builder?: string
}

/** Build arguments every generated build of this job passes. */
export function generatedBuildArgs(state: JobState): Record<string, string> {
  return state.cacheNamespace ? { BUILDKIT_CACHE_MOUNT_NS: state.cacheNamespace } : {}
}

/** The id a mount's entries are keyed and stored under: BuildKit's namespace is part of a cache's name. */
export function keyIdOf(state: Pick<JobState, 'cacheNamespace'>, id: string): string {
  return state.cacheNamespace ? `${state.cacheNamespace}/${id}` : id
}

/**
 * Where a mount's archive waits between the cache and the builder:
 * `<root>/<id segment>.tar`. The same string at restore and save (the GitHub
 * cache hashes it into the entry's version), so it is derived from the id
 * only; never taken from the state.
 */
export function archivePathOf(root: string, state: Pick<JobState, 'cacheNamespace'>, id: string): string {
  return join(root, `${idSegment(keyIdOf(state, id))}.tar`)
}

/** Where inject's listing of a mount waits for post (next to its archive). */
export function listingPathOf(root: string, state: Pick<JobState, 'cacheNamespace'>, id: string): string {
  return join(root, `${idSegment(keyIdOf(state, id))}.listing`)
}

/** The default root: the runner's temp directory (the same for every step of a job). */
export function defaultArchiveRoot(env: NodeJS.ProcessEnv = process.env): string {
  return join(env.RUNNER_TEMP || tmpdir(), 'buildkit-mount-cache')
}
