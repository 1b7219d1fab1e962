import { createWriteStream } from 'node:fs'
import { mkdir, rm, writeFile } from 'node:fs/promises'
import { dirname } from 'node:path'
import { Transform, type Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'

import type { ArchiveSummary } from '../archive/digest.js'
import { scanChain } from '../archive/scan.js'
import type { LiveArchive, StreamMount } from '../archive/inject-stream.js'
import { startsAsDelta } from '../archive/delta.js'
import { HEADER_BYTES, peekBytes } from '../archive/tar-io.js'
import type { Engine } from '../builder/engine.js'
import { buildFailureReason } from '../builder/image-pull.js'
import { routePlan, type StreamReach } from '../builder/route.js'
import { runPhase, type Transport } from '../builder/transport.js'
import { errorMessage } from '../errors.js'
import { formatBytes, seconds } from '../format.js'
import { log, withLabel } from '../log.js'
import { NotStreamable, type CacheStore, type OpenedEntry } from '../storage/store.js'
import { chainDirOf, fetchChain, type FetchedChain } from './chain.js'
import { forEachLimit, TRANSFER_CONCURRENCY } from './concurrency.js'
import { archivePathOf, generatedBuildArgs, listingPathOf, type JobState } from './job.js'
import { lookupKeys } from './keys.js'
import { ReadyQueue } from './ready-queue.js'
import { archiveRootOf, type Services } from './services.js'
import { keyMatch, type MountState, type RestoredChain } from './status.js'

/**
 * Main's work after planning: restores every mount's entry and injects the
 * restored ones in one build. Over a stream the inject build starts as soon
 * as the first archive is ready and takes the others as their downloads
 * finish. Every mount ends `miss`, `refused`, `failed` or `injected`; never
 * throws for cache or engine trouble (warnings, and the mount starts empty).
 */
export async function restoreMounts(services: Services, engine: Engine, state: JobState, reach: StreamReach | undefined): Promise<void> {
  const { mounts } = state
  const ready = new ReadyQueue<StreamMount>()
  const root = archiveRootOf(services)
  const started = Date.now()
  const plan = routePlan(state.extractVia, reach)
  // Without a stream to overlap with, inject takes every archive at once.
  const overlapped = plan[0]?.overlapsDownloads ?? false
  const streaming: Readable[] = []
  try {
    // One log group: over a stream the downloads and the inject build run at the same time.
    await log.group('Restore cache entries and inject them into the builder', async () => {
      const handOff: HandOff = {
        // Over a stream, an entry the store can stream goes into the build as it downloads.
        live: overlapped && services.cache.open !== undefined && streamRestoreAllowed(),
        file: (m, layers) => {
          const [archivePath = '', ...deltas] = layers
          ready.push({ index: m.index, archivePath, ...(deltas.length > 0 ? { deltas } : {}) })
        },
        stream: (m, live) => {
          streaming.push(live.body)
          ready.push({ index: m.index, live })
        }
      }
      const restored = restoreAll(services.cache, state, root, handOff).finally(() => ready.end())
      if (!overlapped) await restored
      if ((await ready.first()) !== undefined) await inject(services, engine, state, plan, ready, root)
      await restored
      // A download that finished after a failed inject build: its archive never reached the builder.
      for (const m of mounts) {
        if (m.restore.kind === 'restored')
          m.restore = { kind: 'failed', reason: 'not taken by the inject build', matchedKey: m.restore.entry.matchedKey }
        // Its download was handed to a build that failed before taking it.
        else if (m.restore.kind === 'pending') m.restore = { kind: 'failed', reason: 'not taken by the inject build' }
      }
      // Downloads the build never took (it failed first): stop them.
      for (const body of streaming) body.destroy()
    })
    const injected = mounts.filter(m => m.restore.kind === 'injected')
    if (injected.length > 0) {
      const slowest = Math.max(...mounts.map(m => m.restoreMs ?? 0)) / 1000
      log.info(
        `Restore to ready: ${seconds(started)} for ${injected.length} mount(s) (slowest restore ${slowest.toFixed(1)} s, inject ${((state.injectMs ?? 0) / 1000).toFixed(1)} s, ${overlapped ? 'overlapped' : 'one after the other'})`
      )
    }
  } finally {
    await Promise.all(
      mounts.flatMap(m => {
        const archivePath = archivePathOf(root, state, m.spec.id)
        return [archivePath, chainDirOf(archivePath)].map(async p => rm(p, { recursive: true, force: true }))
      })
    )
  }
}

/** How a restored mount is handed to the inject build: its archive files, or its download itself. */
interface HandOff {
  /** Whether entries are streamed into the build (CacheStore.open) rather than downloaded first. */
  live: boolean
  file(m: MountState, layers: string[]): void
  stream(m: MountState, live: LiveArchive): void
}

async function restoreAll(cache: CacheStore, state: JobState, root: string, handOff: HandOff): Promise<void> {
  const { mounts } = state
  if (!cache.available()) {
    log.warning('The cache service is not available: every mount starts empty and nothing will be restored.')
    for (const m of mounts) m.restore = { kind: 'refused', reason: 'cache service not available' }
    return
  }
  if (!cache.readable()) {
    log.notice('This job may not read the cache (ACTIONS_CACHE_MODE); every mount starts empty.')
    for (const m of mounts) m.restore = { kind: 'refused', reason: 'cache not readable (ACTIONS_CACHE_MODE)' }
    return
  }
  await forEachLimit(mounts, TRANSFER_CONCURRENCY, async m => withLabel(m.spec.id, async () => restoreOne(cache, state, root, m, handOff)))
}

/**
 * One mount's download and check; every line it logs (the cache library's
 * too) carries the mount's id. A full entry the store can stream goes to
 * the build as it arrives and is checked on its way (the mount settles when
 * the inject stream is done with it); a delta is downloaded with its chain
 * and checked first, as every entry of a store that cannot stream.
 */
async function restoreOne(cache: CacheStore, state: JobState, root: string, m: MountState, handOff: HandOff): Promise<void> {
  const started = Date.now()
  const archivePath = archivePathOf(root, state, m.spec.id)
  const restoreKeys = lookupKeys(m.keys, state.exactMatch === true)
  let matchedKey: string | undefined
  let layers: string[] = []
  let live: LiveArchive | undefined
  try {
    if (state.lookupOnly) {
      matchedKey = await cache.find(archivePath, m.keys.base, restoreKeys)
      m.restore = matchedKey === undefined ? { kind: 'miss' } : { kind: 'found', matchedKey }
      const what = matchedKey === undefined ? `miss (looked for ${m.keys.base}` : `found ${matchedKey} (${keyMatch(m.keys, matchedKey)}`
      log.info(`${m.spec.id}: ${what}; lookup-only: nothing downloaded)`)
      return
    }
    await mkdir(dirname(archivePath), { recursive: true })
    await rm(archivePath, { recursive: true, force: true })
    await rm(listingPathOf(root, state, m.spec.id), { force: true })
    const opened = handOff.live ? await openEntry(cache, m.keys.base, restoreKeys) : undefined
    if (opened === undefined) matchedKey = await cache.restore(archivePath, m.keys.base, restoreKeys)
    else if (opened !== 'miss') {
      matchedKey = opened.matchedKey
      const { head, whole } = await peekBytes(opened.body, HEADER_BYTES)
      if (!startsAsDelta(head)) {
        live = liveArchive(state, m, opened.matchedKey, whole, started)
      } else {
        // A delta: its chain is fetched and checked as files.
        await pipeline(whole, createWriteStream(archivePath))
      }
    }
    if (live !== undefined) return
    if (matchedKey === undefined) {
      log.info(`${m.spec.id}: miss (looked for ${m.keys.base})`)
      m.restore = { kind: 'miss' }
      return
    }
    let chain = await fetchChain(cache, archivePath, matchedKey)
    if (chain.cut !== undefined)
      log.warning(`${m.spec.id}: the delta chain of ${matchedKey} ends early, restoring up to ${chain.keys.at(-1)}: ${chain.cut}`)
    let summary
    try {
      summary = await scanChain(chain.layers, { maxBytes: state.maxRestoreBytes })
    } catch (error) {
      if (chain.layers.length === 1) throw error
      // Never part of a chain: its base alone is one consistent tree.
      log.warning(`${m.spec.id}: the deltas of ${chain.keys[0]} do not apply (${errorMessage(error)}); restoring the base entry alone`)
      chain = baseOnly(chain)
      summary = await scanChain(chain.layers, { maxBytes: state.maxRestoreBytes })
    }
    layers = chain.layers
    const deltas = chain.keys.length > 1 ? `, base ${chain.keys[0]} + ${chain.keys.length - 1} delta(s)` : ''
    const used = chain.keys.at(-1) ?? matchedKey
    markRestored(m, used, summary, { keys: chain.keys, baseBytes: chain.baseBytes, deltaBytes: chain.deltaBytes }, started, { deltas })
  } catch (error) {
    log.warning(`${m.spec.id}: cannot restore the cache entry, the mount starts empty: ${errorMessage(error)}`)
    m.restore = { kind: 'failed', reason: errorMessage(error), ...(matchedKey !== undefined ? { matchedKey } : {}) }
  } finally {
    if (live !== undefined) handOff.stream(m, live)
    else m.restoreMs = Date.now() - started
  }
  // After restoreMs is set: the inject build may take the mount at once.
  if (m.restore.kind === 'restored') handOff.file(m, layers)
}

/**
 * A mount whose checked tree is ready for (or in) the inject build: its
 * state, and the log line naming the key used (the chain's last), how it
 * matched, `deltas` after that and `streamed` before the time.
 */
function markRestored(
  m: MountState,
  used: string,
  summary: ArchiveSummary,
  chain: RestoredChain,
  started: number,
  words: { deltas?: string; streamed?: string }
): void {
  m.restore = { kind: 'restored', entry: { matchedKey: used, digest: summary.digest, bytes: summary.bytes, chain } }
  log.info(
    `${m.spec.id}: restored ${used} (${keyMatch(m.keys, used)}${words.deltas ?? ''}, ${formatBytes(summary.bytes)}, ${summary.entries} entries${words.streamed ?? ''}, ${seconds(started)})`
  )
}

/** The store's stream of the entry, 'miss', or undefined when this store cannot stream after all. */
async function openEntry(cache: CacheStore, primaryKey: string, restoreKeys: string[]): Promise<OpenedEntry | 'miss' | undefined> {
  try {
    return (await cache.open?.(primaryKey, restoreKeys)) ?? 'miss'
  } catch (error) {
    if (error instanceof NotStreamable) return undefined
    throw error
  }
}

/**
 * A full entry on its way into the build. The mount stays `pending` until
 * the inject stream settles it: `restored` with the checked tree's summary,
 * or `failed` when the stream dropped it (the build empties it again).
 */
function liveArchive(state: JobState, m: MountState, matchedKey: string, body: Readable, started: number): LiveArchive {
  let archiveBytes = 0
  const counted = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      archiveBytes += chunk.length
      callback(null, chunk)
    }
  })
  // Either end failing ends both: the consumer sees the download's error, a consumer that stops stops the download.
  pipeline(body, counted).catch(() => undefined)
  return {
    body: counted,
    maxBytes: state.maxRestoreBytes,
    settle: outcome => {
      m.restoreMs = Date.now() - started
      if ('error' in outcome) {
        const reason = errorMessage(outcome.error)
        log.warning(`${m.spec.id}: the cache entry ${matchedKey} was refused on its way into the builder, the mount starts empty: ${reason}`)
        m.restore = { kind: 'failed', reason, matchedKey }
        return
      }
      markRestored(m, matchedKey, outcome.summary, { keys: [matchedKey], baseBytes: archiveBytes, deltaBytes: 0 }, started, {
        streamed: ', streamed into the build'
      })
    }
  }
}

function baseOnly(chain: FetchedChain): FetchedChain {
  return { keys: chain.keys.slice(0, 1), layers: chain.layers.slice(0, 1), baseBytes: chain.baseBytes, deltaBytes: 0 }
}

/**
 * The inject build. It attaches every mount still restoring or restored when
 * it starts (later ones stream in as they arrive); a restored mount the build
 * did not take, or every one when the build failed, ends `failed`.
 */
async function inject(
  services: Services,
  engine: Engine,
  state: JobState,
  plan: Transport[],
  ready: ReadyQueue<StreamMount>,
  root: string
): Promise<void> {
  const started = Date.now()
  const attach = state.mounts.filter(m => m.restore.kind === 'restored' || m.restore.kind === 'pending')
  const job = {
    engine,
    image: state.utilityImage,
    mounts: attach.map(m => ({ index: m.index, spec: m.spec })),
    ready,
    buildArgs: generatedBuildArgs(state),
    bytes: attach.reduce((sum, m) => sum + (m.restore.kind === 'restored' ? m.restore.entry.bytes : 0), 0)
  }
  try {
    const { result, transport, fallbackReason } = await runPhase(plan, 'inject', t => t.inject(services.run, job))
    state.inject = { route: transport.route, ...(fallbackReason !== undefined ? { fallback: fallbackReason } : {}) }
    let bytes = 0
    for (const m of state.mounts) {
      if (m.restore.kind !== 'restored') continue
      if (!result.injected.includes(m.index)) {
        // Dropped by the stream (emptied again in the builder), or restored after it ended (a race the queue rules out).
        const dropped = result.dropped.get(m.index)
        if (dropped !== undefined)
          log.warning(`${m.spec.id}: the restored archive did not reach the builder whole, the mount starts empty: ${dropped}`)
        m.restore = { kind: 'failed', reason: dropped ?? 'not taken by the inject build', matchedKey: m.restore.entry.matchedKey }
        continue
      }
      bytes += m.restore.entry.bytes
      const listing = result.listings.get(m.index)
      if (listing !== undefined) await keepListing(root, state, m, listing)
      const manifest = result.manifests.get(m.index)
      m.restore = { kind: 'injected', entry: m.restore.entry, ...(manifest !== undefined ? { manifest } : {}) }
    }
    log.info(`Injected ${result.injected.length} mount(s), ${formatBytes(bytes)} in ${seconds(started)} (${transport.label('inject')})`)
  } catch (error) {
    log.warning(
      `Could not inject the restored caches into the builder; the build runs with empty cache mounts: ${buildFailureReason(state.utilityImage, error)}`
    )
    for (const m of state.mounts) {
      // Not in the builder, so post must not treat the content as unchanged.
      if (m.restore.kind === 'restored')
        m.restore = { kind: 'failed', reason: `inject failed: ${errorMessage(error)}`, matchedKey: m.restore.entry.matchedKey }
    }
  } finally {
    state.injectMs = Date.now() - started
  }
}

/** Keeps inject's listing of a mount for post (a delta is computed against it); losing it only costs the delta. */
async function keepListing(root: string, state: JobState, m: MountState, listing: Buffer): Promise<void> {
  try {
    await writeFile(listingPathOf(root, state, m.spec.id), listing)
  } catch (error) {
    log.info(`${m.spec.id}: cannot keep inject's listing, the next save is a full one: ${errorMessage(error)}`)
  }
}

/**
 * BUILDKIT_MOUNT_CACHE_STREAM_RESTORE=false downloads and checks every entry
 * before the inject build takes it, as for stores that cannot stream (to
 * compare, or to rule the streamed restore out when looking for a fault).
 */
function streamRestoreAllowed(env: NodeJS.ProcessEnv = process.env): boolean {
  return (env.BUILDKIT_MOUNT_CACHE_STREAM_RESTORE ?? '').trim().toLowerCase() !== 'false'
}
