import { createWriteStream } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Readable } from 'node:stream'
import { text } from 'node:stream/consumers'
import { pipeline } from 'node:stream/promises'

import { buildContext, forEachEntry } from './archive.js'
import type { CommandRunner } from './command.js'
import { injectDockerfile, MANIFEST, MANIFEST_FILE, PORT_ARG, STREAM_FILE, TOKEN_ARG, type IndexedMount, type InjectMode } from './dockerfile.js'
import { runBuild, type Engine } from './engine.js'
import { errorMessage } from './errors.js'
import type { ExtractChoice } from './extract.js'
import { injectStream, type StreamMount } from './inject-stream.js'
import { log } from './log.js'
import { listenOnce } from './loopback.js'
import type { ReadyQueue } from './ready-queue.js'

export interface InjectRequest {
  engine: Engine
  image: string
  /** Every mount that may receive files; the ones never restored stay as BuildKit creates them. */
  mounts: IndexedMount[]
  /** Restored archives, pushed as each download is checked; ended when every restore settled. */
  ready: ReadyQueue<StreamMount>
  buildArgs: Record<string, string>
  /** `export` (no host networking) injects through the build context. */
  choice: ExtractChoice
}

export interface InjectResult {
  mode: InjectMode
  /** Indexes of the mounts whose archive went into the builder. */
  injected: number[]
  /** Each injected mount's manifest (see dockerfile.ts), when the image could compute one. */
  manifests: Map<number, string>
  /** Why the loopback stream was not used, when it was tried. */
  fallbackReason?: string
}

/**
 * Injects the restored mounts in one build. `auto` streams them over
 * loopback, starting while later downloads are still running, and falls back
 * to the build context (after every download) when host networking or the
 * stream fails, saying why. Throws when no route worked.
 */
export async function injectMounts(run: CommandRunner, request: InjectRequest): Promise<InjectResult> {
  let fallbackReason: string | undefined
  if (request.choice !== 'export') {
    try {
      return await viaLoopback(run, request)
    } catch (error) {
      if (request.choice === 'loopback') throw error
      fallbackReason = errorMessage(error)
      log.info(`Loopback stream not available (${fallbackReason}); injecting through the build context instead.`)
    }
  }
  return { ...(await viaContext(run, request)), ...(fallbackReason !== undefined ? { fallbackReason } : {}) }
}

async function viaLoopback(run: CommandRunner, request: InjectRequest): Promise<InjectResult> {
  // The stream waits for downloads; the build on the other end waits with it.
  const listener = await listenOnce({ idleTimeoutMs: 0, sendAfterPeerEnds: true })
  const injected: number[] = []
  let stream: Readable | undefined
  const sent = listener.accepted.then(async socket => {
    const sources = async function* (): AsyncIterable<StreamMount> {
      for await (const m of request.ready) {
        injected.push(m.index)
        yield m
      }
    }
    stream = injectStream(sources())
    await pipeline(stream, socket)
  })
  sent.catch(() => undefined)
  const dockerfile = injectDockerfile(request.image, request.mounts, 'loopback')
  log.debug(`Inject Dockerfile:\n${dockerfile}`)
  let manifests = new Map<number, string>()
  try {
    await runBuild(run, request.engine, {
      context: buildContext(dockerfile),
      output: async out => {
        manifests = await readManifests(out)
      },
      onLine: line => log.debug(line),
      buildArgs: { ...request.buildArgs, [PORT_ARG]: String(listener.port), [TOKEN_ARG]: listener.token },
      network: 'host'
    })
  } catch (error) {
    stream?.destroy()
    throw error
  } finally {
    listener.close()
    if (listener.rejected() > 0) log.warning(`The inject listener dropped ${listener.rejected()} connection(s) without the token.`)
  }
  // The build unpacked the whole stream (it checks for the list that ends it), so sending is done.
  await sent
  return { mode: 'loopback', injected, manifests: only(manifests, injected) }
}

async function viaContext(run: CommandRunner, request: InjectRequest): Promise<InjectResult> {
  const ready = await request.ready.all()
  const byIndex = new Set(ready.map(m => m.index))
  const mounts = request.mounts.filter(m => byIndex.has(m.index))
  if (mounts.length === 0) return { mode: 'context', injected: [], manifests: new Map() }
  const dockerfile = injectDockerfile(request.image, mounts, 'context')
  log.debug(`Inject Dockerfile:\n${dockerfile}`)
  // A directory context of two files: BuildKit transfers the stream as one file and the RUN unpacks it in place.
  const dir = await mkdtemp(join(process.env.RUNNER_TEMP ?? tmpdir(), 'buildkit-mount-cache-inject-'))
  let manifests = new Map<number, string>()
  try {
    await writeFile(join(dir, 'Dockerfile'), dockerfile)
    await pipeline(injectStream(ofList(ready)), createWriteStream(join(dir, STREAM_FILE)))
    await runBuild(run, request.engine, {
      context: { dir },
      output: async out => {
        manifests = await readManifests(out)
      },
      onLine: line => log.debug(line),
      buildArgs: request.buildArgs
    })
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
  const injected = ready.map(m => m.index)
  return { mode: 'context', injected, manifests: only(manifests, injected) }
}

async function* ofList<T>(items: T[]): AsyncIterable<T> {
  yield* items
}

/** The manifests the inject build wrote (MANIFEST_FILE in its result); malformed lines are ignored. */
async function readManifests(out: Readable): Promise<Map<number, string>> {
  const manifests = new Map<number, string>()
  await forEachEntry(out, async (header, body) => {
    if (header.name.replace(/^\.?\//, '') !== MANIFEST_FILE || header.type !== 'file' || (header.size ?? 0) > 1024 ** 2) return
    for (const line of (await text(body)).split('\n')) {
      const match = /^(\d{1,6}) (\S+)$/.exec(line)
      if (match && MANIFEST.test(match[2] ?? '')) manifests.set(Number(match[1]), match[2] as string)
    }
  })
  return manifests
}

function only(manifests: Map<number, string>, indexes: number[]): Map<number, string> {
  return new Map([...manifests].filter(([index]) => indexes.includes(index)))
}
