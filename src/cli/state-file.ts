import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises'
import { dirname } from 'node:path'

import { parseJobState, serializeJobState } from '../action/state.js'
import type { JobState } from '../core/job.js'
import { errorMessage } from '../errors.js'
import { UsageError } from './args.js'

/**
 * The CLI's state file: what the action keeps in GITHUB_STATE between main
 * and post (frozen keys, what was injected, the client and builder), so
 * `save` after the build knows what `restore` injected and skips unchanged
 * mounts. Loaded with the same field-by-field checks as the action's state.
 */
export async function writeStateFile(path: string, state: JobState): Promise<void> {
  // Replaced atomically: a save reading it meanwhile sees the old or the new state, never half.
  const temp = `${path}.${process.pid}.tmp`
  await mkdir(dirname(path), { recursive: true })
  await writeFile(temp, `${serializeJobState(state, 2)}\n`)
  await rename(temp, path)
}

/**
 * Removes an earlier run's state file: restore calls it first, so a restore
 * that fails before it writes its own state never leaves save the keys of
 * another job (the default location outlives the job outside GitHub Actions).
 */
export async function removeStateFile(path: string): Promise<void> {
  await rm(path, { force: true })
}

/** The state, or undefined when there is no state file. */
export async function readStateFile(path: string): Promise<JobState | undefined> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw error
  }
  try {
    return parseJobState(text)
  } catch (error) {
    throw new UsageError(`state file ${path}: ${errorMessage(error)}; run restore again or remove the file`)
  }
}
