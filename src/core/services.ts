import type { CommandRunner } from '../builder/command.js'
import type { CacheStore } from '../storage/store.js'
import { defaultArchiveRoot } from './job.js'

/**
 * The seams of the core: every process it starts goes through `run`, every
 * entry through `cache`. The action and the CLI pass the real ones; unit
 * tests pass a scripted runner and an in-memory store.
 */
export interface Services {
  run: CommandRunner
  cache: CacheStore
  /** The docker CLI to run (default `docker` on PATH). */
  docker?: string
  /** Directory the mount archives wait in (default defaultArchiveRoot(): under RUNNER_TEMP). */
  archiveRoot?: string
  /** hashFiles over key-file patterns (default @actions/glob's). */
  hashFiles?: (patterns: string) => Promise<string>
}

/** The directory mount archives wait in for these services. */
export function archiveRootOf(services: Services): string {
  return services.archiveRoot ?? defaultArchiveRoot()
}
