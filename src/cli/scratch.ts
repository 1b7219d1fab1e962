import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/**
 * Where mount archives wait between the builder and the store. The core
 * puts them under RUNNER_TEMP, which on a laptop or a CI agent is unset and
 * would make two CLI runs share archive files. Self-hosted backends get a
 * private directory per process; the GitHub backend keeps RUNNER_TEMP, whose
 * archive path is part of the entry's version. Returns the cleanup.
 */
export async function useScratchDir(githubBackend: boolean, env: NodeJS.ProcessEnv = process.env): Promise<() => Promise<void>> {
  if (githubBackend) return async () => undefined
  const dir = await mkdtemp(join(tmpdir(), 'buildkit-mount-cache-'))
  env.RUNNER_TEMP = dir
  return async () => rm(dir, { recursive: true, force: true })
}
