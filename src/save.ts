import { mkdir, rm } from 'node:fs/promises'
import { dirname } from 'node:path'

import * as core from '@actions/core'

import { buildContext, splitExport, type ArchiveSummary } from './archive.js'
import { exportDir, extractDockerfile } from './dockerfile.js'
import { runBuild } from './engine.js'
import { errorMessage } from './errors.js'
import { formatBytes, seconds } from './format.js'
import { saveKey } from './keys.js'
import { realServices, type Services } from './restore.js'
import { loadMainState, type MainState, type MountState } from './state.js'

/**
 * Post step: extract every mount in one build, split the exported tar into
 * one archive per mount, and save the mounts whose content changed. Never
 * fails the job: every problem is a warning.
 */
export async function runPost(services: Services = realServices): Promise<void> {
  let state: MainState | undefined
  try {
    state = loadMainState()
  } catch (error) {
    core.warning(`Not saving cache mounts: ${errorMessage(error)}`)
    return
  }
  if (!state) {
    core.info('The main step did not run to the point of restoring; nothing to save.')
    return
  }
  if (!services.cache.available()) {
    core.warning('The cache service is not available: cache mounts are not saved.')
    return
  }
  const { mounts } = state
  try {
    const summaries = await core.group('Extract from the builder', async () => extract(services, state, mounts))
    if (!summaries) return
    await core.group('Save cache entries', async () => saveAll(services, mounts, summaries))
  } finally {
    await Promise.all(mounts.map(m => rm(m.archivePath, { force: true })))
  }
}

async function extract(services: Services, state: MainState, mounts: MountState[]): Promise<Map<string, ArchiveSummary> | undefined> {
  const started = Date.now()
  const dockerfile = extractDockerfile(state.utilityImage, mounts.map(m => ({ index: m.index, spec: m.spec })))
  core.debug(`Extract Dockerfile:\n${dockerfile}`)
  let summaries: Map<string, ArchiveSummary> | undefined
  try {
    await Promise.all(mounts.map(m => mkdir(dirname(m.archivePath), { recursive: true })))
    await runBuild(
      services.run,
      state.engine,
      buildContext(dockerfile, []),
      async out => {
        summaries = await splitExport(out, mounts.map(m => ({ dir: exportDir(m.index), archivePath: m.archivePath })))
      },
      line => core.debug(line)
    )
  } catch (error) {
    core.warning(`Could not extract the cache mounts from the builder; nothing is saved: ${errorMessage(error)}`)
    return undefined
  }
  const bytes = [...(summaries?.values() ?? [])].reduce((sum, s) => sum + s.bytes, 0)
  core.info(`Extracted ${mounts.length} mount(s), ${formatBytes(bytes)} in ${seconds(started)}`)
  return summaries
}

async function saveAll(services: Services, mounts: MountState[], summaries: Map<string, ArchiveSummary>): Promise<void> {
  for (const m of mounts) {
    const summary = summaries.get(exportDir(m.index))
    if (!summary) continue
    if (summary.entries <= 1) {
      core.info(`${m.spec.id}: the mount is empty, nothing to save`)
      continue
    }
    if (summary.digest === m.restoredDigest) {
      core.info(`${m.spec.id}: unchanged since restore (${m.matchedKey}), nothing to save`)
      continue
    }
    const key = saveKey(m.keys, summary.digest)
    const started = Date.now()
    try {
      const saved = await services.cache.save(m.archivePath, key)
      core.info(saved ? `${m.spec.id}: saved ${key} (${formatBytes(summary.bytes)}, ${seconds(started)})` : `${m.spec.id}: not saved under ${key} (see the warning above)`)
    } catch (error) {
      core.warning(`${m.spec.id}: cannot save the cache entry: ${errorMessage(error)}`)
    }
  }
}
