import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import { defaultArchiveRoot } from '../core/job.js'

/**
 * Where mount archives wait between the builder and the store. The core's
 * default is under RUNNER_TEMP, which on a laptop or a CI agent is unset and
 * would make two CLI runs share archive files. Self-hosted backends get a
 * private directory per process; the GitHub backend keeps RUNNER_TEMP, whose
 * archive path is part of the entry's version.
 */
export async function scratchDir(
  githubBackend: boolean,
  env: NodeJS.ProcessEnv = process.env
): Promise<{ root: string; cleanup: () => Promise<void> }> {
  if (githubBackend) return { root: defaultArchiveRoot(env), cleanup: async () => undefined }
  const dir = await mkdtemp(join(tmpdir(), 'buildkit-mount-cache-'))
  return { root: join(dir, 'buildkit-mount-cache'), cleanup: async () => rm(dir, { recursive: true, force: true }) }
}
