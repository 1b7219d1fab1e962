import { readFile, rename, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { basename, join } from 'node:path'

import { errorMessage } from '../errors.js'
import { parseMainState, type MainState } from '../state.js'
import { UsageError } from './args.js'

/**
 * The CLI's state file: what the action keeps in GITHUB_STATE between main
 * and post (frozen keys, restored digests, the engine), so `save` after the
 * build knows what `restore` injected and skips unchanged mounts.
 */
export async function writeStateFile(path: string, state: MainState): Promise<void> {
  // Replaced atomically: a save reading it meanwhile sees the old or the new state, never half.
  const temp = `${path}.${process.pid}.tmp`
  await writeFile(temp, `${JSON.stringify(state, null, 2)}\n`)
  await rename(temp, path)
}

/** The state, or undefined when there is no state file. */
export async function readStateFile(path: string): Promise<MainState | undefined> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw error
  }
  try {
    return parseMainState(text)
  } catch (error) {
    throw new UsageError(`state file ${path}: ${errorMessage(error)}; run restore again or remove the file`)
  }
}

/**
 * The archive paths of a state written by another process, moved to this
 * process's scratch directory (the restoring process's one is gone). The
 * file name is kept: for the GitHub backend the path is part of the entry's
 * version and both processes share RUNNER_TEMP.
 */
export function rehomeArchives(state: MainState, env: NodeJS.ProcessEnv = process.env): MainState {
  const root = join(env.RUNNER_TEMP || tmpdir(), 'buildkit-mount-cache')
  return { ...state, mounts: state.mounts.map(m => ({ ...m, archivePath: join(root, basename(m.archivePath)) })) }
}
