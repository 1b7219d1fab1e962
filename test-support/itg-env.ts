import { spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import { afterAll, beforeAll } from '@jest/globals'

import { bundleAction, REPO_ROOT } from './action-runner.js'
import { startCacheService, type CacheService } from './cache-service/server.js'

/**
 * The ground of an integration test file: the local engine started (idempotent),
 * the action freshly bundled, a local cache service, and a scratch directory
 * with a workspace and a job-summary file. Registered as beforeAll/afterAll;
 * the fields are valid inside tests.
 */
export interface ItgEnv {
  work: string
  workspace: string
  summaryFile: string
  bundleDir: string
  service: CacheService
}

export function useItgEnv(name: string): ItgEnv {
  const work = mkdtempSync(join(tmpdir(), `bmc-${name}-`))
  const env = { work, workspace: join(work, 'ws'), summaryFile: join(work, 'summary.md') } as ItgEnv
  let cleanupBundle: (() => void) | undefined
  beforeAll(async () => {
    const engine = spawnSync('bash', [join(REPO_ROOT, 'scripts/engine.sh'), 'start'], { encoding: 'utf8' })
    if (engine.status !== 0) throw new Error(`engine.sh start failed:\n${engine.stderr}`)
    const bundle = bundleAction()
    env.bundleDir = bundle.dir
    cleanupBundle = bundle.cleanup
    env.service = await startCacheService({ dataDir: join(work, 'cache-data') })
    mkdirSync(env.workspace, { recursive: true })
    writeFileSync(env.summaryFile, '')
  })
  afterAll(async () => {
    await env.service?.close()
    cleanupBundle?.()
    rmSync(work, { recursive: true, force: true })
  })
  return env
}
