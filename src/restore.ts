import { mkdir, rm } from 'node:fs/promises'
import { dirname } from 'node:path'

import * as core from '@actions/core'
import * as glob from '@actions/glob'

import { scanMountArchive } from './archive.js'
import type { CacheStore } from './cache.js'
import { runCommand, type CommandRunner } from './command.js'
import { DEFAULT_MAX_RESTORE_BYTES, getInputs, InputName, mountArchivePath, type Inputs } from './context.js'
import { resolveEngine } from './engine.js'
import { errorMessage } from './errors.js'
import { forEachLimit, TRANSFER_CONCURRENCY } from './concurrency.js'
import { formatBytes, seconds } from './format.js'
import { injectMounts } from './inject.js'
import type { StreamMount } from './inject-stream.js'
import { mountKeys } from './keys.js'
import { log } from './log.js'
import { ReadyQueue } from './ready-queue.js'
import { generatedBuildArgs, saveMainState, type MainState, type MountState } from './state.js'
import { deferredStore } from './storage/select.js'
import { writeSummary } from './summary.js'

export interface Services {
  run: CommandRunner
  cache: CacheStore
}

/**
 * The store is the one the `backend` input names, opened on first use: this
 * value exists before inputs are read, and post and the sub-actions get the
 * same inputs as main.
 */
export const realServices: Services = { run: runCommand, cache: deferredStore(() => core.getInput(InputName.backend)) }

/**
 * Resolves the engine and freezes every mount's keys. Key files are hashed
 * once per distinct pattern list; a mount's own key-files replace the step's.
 */
export async function planMounts(services: Services, inputs: Inputs): Promise<MainState> {
  const engine = await resolveEngine(services.run, inputs.client, inputs.builder)
  const hashes = new Map<string, Promise<string>>()
  const hashOf = (patterns: string[]): Promise<string> => {
    const text = patterns.join('\n')
    if (text === '') return Promise.resolve('')
    if (!hashes.has(text)) hashes.set(text, glob.hashFiles(text))
    return hashes.get(text) as Promise<string>
  }
  const mounts: MountState[] = []
  for (const [index, spec] of inputs.mounts.entries()) {
    const filesHash = await hashOf(spec.keyFiles ?? inputs.keyFiles)
    // The namespace is part of the cache's name in BuildKit, so it is part of its key here.
    const keyId = inputs.cacheNamespace ? `${inputs.cacheNamespace}/${spec.id}` : spec.id
    mounts.push({ index, spec, keys: mountKeys(inputs.keyPrefix, keyId, inputs.platform, filesHash), archivePath: mountArchivePath(keyId) })
  }
  const state: MainState = { version: 1, engine, utilityImage: inputs.utilityImage, save: inputs.save, extractVia: inputs.extractVia, mounts }
  if (inputs.maxSize !== undefined) state.maxSize = inputs.maxSize
  if (inputs.maxRestoreBytes !== undefined) state.maxRestoreBytes = inputs.maxRestoreBytes
  if (inputs.cacheNamespace !== undefined) state.cacheNamespace = inputs.cacheNamespace
  return state
}

/**
 * Main step: compute keys, restore each mount's entry, inject every restored
 * mount in one build. Only bad inputs throw; cache and engine trouble end as
 * warnings with the mount treated as a miss, so the user's build still runs.
 */
export async function runMain(services: Services = realServices, restoreOnly = false): Promise<void> {
  const inputs = getInputs()
  const state = await planMounts(services, inputs)
  const { engine } = state
  log.info(
    `Client: ${engine.client === 'buildx' ? 'docker buildx build' : 'DOCKER_BUILDKIT=1 docker build'}${engine.builder ? ` (builder ${engine.builder})` : ''}`
  )
  // Saved before anything can fail, so post always finds the frozen keys.
  saveMainState(state)

  await restoreMounts(services, state)
  saveMainState(state)
  setOutputs(state)
  // With a save to come, post writes the summary with both halves.
  if (restoreOnly || !state.save) await writeSummary(state, undefined)
}

/**
 * Restores every mount's entry and injects the restored ones in one build.
 * Over loopback, the inject build starts as soon as the first archive is
 * ready and takes the others as their downloads finish. Records hits,
 * digests, manifests and timings in `state`; never throws for cache or
 * engine trouble (warnings, and the mount counts as a miss).
 */
export async function restoreMounts(services: Services, state: MainState): Promise<void> {
  const { mounts } = state
  const ready = new ReadyQueue<StreamMount>()
  const started = Date.now()
  // Without host networking (extract-via: export) there is nothing to overlap: inject takes every archive at once.
  const oneAfterTheOther = (state.extractVia ?? 'auto') === 'export'
  try {
    // One log group: over loopback the downloads and the inject build run at the same time.
    await log.group('Restore cache entries and inject them into the builder', async () => {
      const restored = restoreAll(services.cache, mounts, state.maxRestoreBytes ?? DEFAULT_MAX_RESTORE_BYTES, m => ready.push(m)).finally(() =>
        ready.end()
      )
      if (oneAfterTheOther) await restored
      if ((await ready.first()) !== undefined) await inject(services.run, state, ready)
      await restored
    })
    const restored = mounts.filter(m => m.restoredDigest !== undefined)
    if (restored.length > 0) {
      const slowest = Math.max(...mounts.map(m => m.restoreMs ?? 0)) / 1000
      log.info(
        `Restore to ready: ${seconds(started)} for ${restored.length} mount(s) (slowest restore ${slowest.toFixed(1)} s, inject ${((state.injectMs ?? 0) / 1000).toFixed(1)} s, ${oneAfterTheOther ? 'one after the other' : 'overlapped'})`
      )
    }
  } finally {
    await Promise.all(mounts.map(m => rm(m.archivePath, { recursive: true, force: true })))
  }
}

async function restoreAll(cache: CacheStore, mounts: MountState[], maxBytes: number, onReady: (m: StreamMount) => void): Promise<void> {
  if (!cache.available()) {
    log.warning('The cache service is not available: every mount starts empty and nothing will be restored.')
    return
  }
  if (!cache.readable()) {
    log.notice('This job may not read the cache (ACTIONS_CACHE_MODE); every mount starts empty.')
    return
  }
  await forEachLimit(mounts, TRANSFER_CONCURRENCY, async m => {
    const started = Date.now()
    try {
      await mkdir(dirname(m.archivePath), { recursive: true })
      await rm(m.archivePath, { recursive: true, force: true })
      const matched = await cache.restore(m.archivePath, m.keys.base, m.keys.restoreKeys)
      if (matched === undefined) {
        log.info(`${m.spec.id}: miss (looked for ${m.keys.base})`)
        return
      }
      const summary = await scanMountArchive(m.archivePath, { maxBytes })
      m.matchedKey = matched
      m.restoredDigest = summary.digest
      m.restoredBytes = summary.bytes
      log.info(`${m.spec.id}: restored ${matched} (${formatBytes(summary.bytes)}, ${summary.entries} entries, ${seconds(started)})`)
      onReady({ index: m.index, archivePath: m.archivePath })
    } catch (error) {
      log.warning(`${m.spec.id}: cannot restore the cache entry, the mount starts empty: ${errorMessage(error)}`)
      delete m.matchedKey
      delete m.restoredDigest
      delete m.restoredBytes
    } finally {
      m.restoreMs = Date.now() - started
    }
  })
}

/**
 * The mounts the inject build attaches: every mount not known to have
 * missed when it starts (later ones are streamed as they arrive).
 */
async function inject(run: CommandRunner, state: MainState, ready: ReadyQueue<StreamMount>): Promise<void> {
  const started = Date.now()
  const attach = state.mounts.filter(m => m.restoredDigest !== undefined || m.restoreMs === undefined)
  try {
    const result = await injectMounts(run, {
      engine: state.engine,
      image: state.utilityImage,
      mounts: attach.map(m => ({ index: m.index, spec: m.spec })),
      ready,
      buildArgs: generatedBuildArgs(state),
      choice: state.extractVia ?? 'auto'
    })
    if (result.fallbackReason !== undefined) state.loopback = false
    let bytes = 0
    for (const m of state.mounts) {
      if (!result.injected.includes(m.index)) {
        // Restored after all (a race the queue rules out) or not at all: not in the builder.
        delete m.restoredDigest
        continue
      }
      bytes += m.restoredBytes ?? 0
      const manifest = result.manifests.get(m.index)
      if (manifest !== undefined) m.manifest = manifest
    }
    const how = result.mode === 'loopback' ? 'loopback stream' : 'build context'
    log.info(`Injected ${result.injected.length} mount(s), ${formatBytes(bytes)} in ${seconds(started)} (${how})`)
  } catch (error) {
    log.warning(`Could not inject the restored caches into the builder; the build runs with empty cache mounts: ${errorMessage(error)}`)
    for (const m of state.mounts) {
      // Not in the builder, so post must not treat the content as unchanged.
      delete m.restoredDigest
      delete m.manifest
    }
  } finally {
    state.injectMs = Date.now() - started
  }
}

function setOutputs(state: MainState): void {
  const { mounts } = state
  const hit = mounts.every(m => m.matchedKey !== undefined && m.matchedKey.startsWith(`${m.keys.base}-`) && m.restoredDigest !== undefined)
  core.setOutput('cache-hit', String(hit))
  core.setOutput(
    'mounts',
    JSON.stringify(
      mounts.map(m => ({
        id: m.spec.id,
        key: m.keys.base,
        'matched-key': m.matchedKey ?? '',
        hit: m.restoredDigest !== undefined,
        'restored-bytes': m.restoredBytes ?? 0
      }))
    )
  )
  // For the save sub-action (save/action.yml input `state`).
  core.setOutput('state', JSON.stringify(state))
}
