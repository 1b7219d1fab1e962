import { Readable } from 'node:stream'

import { buildContext, forEachEntry, splitExport, type ArchiveSummary, type SplitTarget } from './archive.js'
import type { CommandRunner } from './command.js'
import { EXPORT_FILE, extractDockerfile, PORT_ARG, TOKEN_ARG, type ExtractMode, type IndexedMount } from './dockerfile.js'
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
}

export interface ExtractResult {
  summaries: Map<string, ArchiveSummary>
  mode: ExtractMode
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
      return { summaries: await viaLoopback(run, request), mode: 'loopback' }
    } catch (error) {
      if (request.choice === 'loopback' || error instanceof LocalSplitError) throw error
      log.info(`Loopback stream not available (${errorMessage(error)}); extracting through the build's exporter instead.`)
    }
  }
  return { summaries: await viaExport(run, request), mode: 'export' }
}

async function viaLoopback(run: CommandRunner, request: ExtractRequest): Promise<Map<string, ArchiveSummary>> {
  const listener = await listenOnce()
  let splitError: unknown
  const splitting = listener.accepted.then(socket => splitExport(socket, request.targets))
  splitting.catch((error: unknown) => {
    splitError = error
  })
  const dockerfile = extractDockerfile(request.image, request.mounts, 'loopback')
  log.debug(`Extract Dockerfile:\n${dockerfile}`)
  try {
    await runBuild(run, request.engine, {
      context: buildContext(dockerfile, []),
      onLine: line => log.debug(line),
      buildArgs: { ...request.buildArgs, [PORT_ARG]: String(listener.port), [TOKEN_ARG]: listener.token },
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

async function viaExport(run: CommandRunner, request: ExtractRequest): Promise<Map<string, ArchiveSummary>> {
  const dockerfile = extractDockerfile(request.image, request.mounts, 'export')
  log.debug(`Extract Dockerfile:\n${dockerfile}`)
  let summaries: Map<string, ArchiveSummary> | undefined
  await runBuild(run, request.engine, {
    context: buildContext(dockerfile, []),
    output: async out =>
      forEachEntry(out, async (header, body) => {
        if (header.name.replace(/^\.?\//, '') !== EXPORT_FILE || summaries) return
        summaries = await splitExport(Readable.from(body), request.targets)
      }),
    onLine: line => log.debug(line),
    buildArgs: request.buildArgs
  })
  if (!summaries) throw new ArchiveError('ARCHIVE_UNEXPECTED', `the extract build's output has no ${EXPORT_FILE}`)
  return summaries
}

/** The mounts reached the action but could not be split and stored; no other route would do better. */
class LocalSplitError extends Error {
  constructor(cause: unknown) {
    super(errorMessage(cause), { cause })
    this.name = 'LocalSplitError'
  }
}
