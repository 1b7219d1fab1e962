import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/**
 * Where mount archives wait between the builder and the store: a private
 * directory per process (two CLI runs never share archive files), under
 * RUNNER_TEMP when set (on a runner, the file system of the workspace the
 * GitHub backend passes archives through), else the temp dir. No backend's
 * entries depend on this path: the GitHub backend hands the library a path
 * relative to the workspace (storage/actions-cache.ts).
 */
export async function scratchDir(env: NodeJS.ProcessEnv = process.env): Promise<{ root: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(env.RUNNER_TEMP || tmpdir(), 'buildkit-mount-cache-'))
  return { root: join(dir, 'buildkit-mount-cache'), cleanup: async () => rm(dir, { recursive: true, force: true }) }
}
