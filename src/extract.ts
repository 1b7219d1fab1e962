import { Readable } from 'node:stream'
import { text } from 'node:stream/consumers'

import { buildContext, forEachEntry, splitExport, type ArchiveSummary, type SplitTarget } from './archive.js'
import type { CommandRunner } from './command.js'
import {
  EXPORT_FILE,
  extractDockerfile,
  MANIFEST,
  manifestArg,
  PORT_ARG,
  STATUS_FILE,
  TOKEN_ARG,
  type ExtractMode,
  type IndexedMount
} from './dockerfile.js'
import { runBuild, type Engine } from './engine.js'
import { ArchiveError, errorMessage } from './errors.js'
import { log } from './log.js'
import { listenOnce } from './loopback.js'

export type ExtractChoice = 'auto' | ExtractMode

export interface ExtractRequest {
  engine: Engine
  image: string
  mounts: IndexedMount[]
  targets: SplitTarget[]
  buildArgs: Record<string, string>
  choice: ExtractChoice
  /** Manifests inject recorded, by mount index: the build skips a mount whose manifest is unchanged. */
  manifests?: Map<number, string>
}

export interface ExtractResult {
  /** Per mount directory that was archived. */
  summaries: Map<string, ArchiveSummary>
  /** Mount directories the build found unchanged since inject (not archived). */
  unchanged: Set<string>
  mode: ExtractMode
}

/** What the stream of an extract build holds: archived mounts, and the names of the unchanged ones. */
interface Received {
  summaries: Map<string, ArchiveSummary>
  unchanged: Set<string>
}

/**
 * Extracts every mount in one build. `auto` streams over loopback (fastest:
 * no copy in the builder, no exporter pass) and falls back to the exporter
 * when host networking or the stream is not available (docker-container
 * builders without the network.host entitlement, a utility image without
 * nc), saying why.
 */
export async function extractMounts(run: CommandRunner, request: ExtractRequest): Promise<ExtractResult> {
  if (request.choice !== 'export') {
    try {
      return { ...(await viaLoopback(run, request)), mode: 'loopback' }
    } catch (error) {
      if (request.choice === 'loopback' || error instanceof LocalSplitError) throw error
      log.info(`Loopback stream not available (${errorMessage(error)}); extracting through the build's exporter instead.`)
    }
  }
  return { ...(await viaExport(run, request)), mode: 'export' }
}

/** Build arguments of the extract build: the manifests (validated: they reach a shell test). */
function extractArgs(request: ExtractRequest): Record<string, string> {
  const args = { ...request.buildArgs }
  for (const m of request.mounts) {
    const manifest = request.manifests?.get(m.index)
    if (manifest !== undefined && MANIFEST.test(manifest)) args[manifestArg(m.index)] = manifest
  }
  return args
}

/** Splits one extract stream: mount archives, and the status file naming the unchanged mounts. */
async function receive(source: Readable, targets: SplitTarget[]): Promise<Received> {
  const unchanged = new Set<string>()
  const summaries = await splitExport(source, targets, async (name, body) => {
    if (name !== STATUS_FILE) return
    for (const line of (await text(body)).split('\n')) if (targets.some(t => t.dir === line)) unchanged.add(line)
  })
  const missing = targets.filter(t => !summaries.has(t.dir) && !unchanged.has(t.dir))
  if (missing.length > 0) {
    throw new ArchiveError(
      'ARCHIVE_UNEXPECTED',
      `the extract stream has no ${missing.map(t => t.dir).join(', ')} and does not list them as unchanged`
    )
  }
  return { summaries, unchanged }
}

async function viaLoopback(run: CommandRunner, request: ExtractRequest): Promise<Received> {
  const listener = await listenOnce()
  let splitError: unknown
  const splitting = listener.accepted.then(socket => receive(socket, request.targets))
  splitting.catch((error: unknown) => {
    splitError = error
  })
  const dockerfile = extractDockerfile(request.image, request.mounts, 'loopback')
  log.debug(`Extract Dockerfile:\n${dockerfile}`)
  try {
    await runBuild(run, request.engine, {
      context: buildContext(dockerfile),
      onLine: line => log.debug(line),
      buildArgs: { ...extractArgs(request), [PORT_ARG]: String(listener.port), [TOKEN_ARG]: listener.token },
      network: 'host'
    })
  } catch (error) {
    // The stream arrived but could not be stored (full disk, an unsafe entry): the exporter would fail the same way.
    await new Promise(resolve => setTimeout(resolve, 100))
    if (splitError !== undefined) throw new LocalSplitError(splitError)
    throw error
  } finally {
    listener.close()
    if (listener.rejected() > 0) log.warning(`The extract listener dropped ${listener.rejected()} connection(s) without the token.`)
  }
  return await splitting.catch((error: unknown) => {
    throw new LocalSplitError(error)
  })
}

async function viaExport(run: CommandRunner, request: ExtractRequest): Promise<Received> {
  const dockerfile = extractDockerfile(request.image, request.mounts, 'export')
  log.debug(`Extract Dockerfile:\n${dockerfile}`)
  let received: Received | undefined
  await runBuild(run, request.engine, {
    context: buildContext(dockerfile),
    output: async out =>
      forEachEntry(out, async (header, body) => {
        if (header.name.replace(/^\.?\//, '') !== EXPORT_FILE || received) return
        received = await receive(Readable.from(body), request.targets)
      }),
    onLine: line => log.debug(line),
    buildArgs: extractArgs(request)
  })
  if (!received) throw new ArchiveError('ARCHIVE_UNEXPECTED', `the extract build's output has no ${EXPORT_FILE}`)
  return received
}

/** The mounts reached the action but could not be split and stored; no other route would do better. */
class LocalSplitError extends Error {
  constructor(cause: unknown) {
    super(errorMessage(cause), { cause })
    this.name = 'LocalSplitError'
  }
}
