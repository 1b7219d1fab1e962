import type { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'

import { injectStream, type StreamMount } from '../archive/inject-stream.js'
import { errorMessage } from '../errors.js'
import { log } from '../log.js'
import type { CommandRunner } from './command.js'
import { dockerfileContext } from './context-tar.js'
import { extractDockerfile, injectDockerfile, PORT_ARG, TOKEN_ARG } from './dockerfile.js'
import { buildIdleMs, buildTotalMs, Deadline } from './deadline.js'
import { runBuild, type BuildNetwork } from './engine.js'
import { listenOnce, type OneShotListener } from './listener.js'
import { manifestsFor, readManifests } from './manifests.js'
import { receiveExtract } from './receive.js'
import { LocalTransferError, type Extracted, type ExtractJob, type Injected, type InjectJob, type Phase, type Transport } from './transport.js'

/**
 * The stream route: the generated RUN connects to a one-shot listener of
 * the action (`nc HOST PORT`) and unpacks what it receives (inject) or sends
 * `tar -c` of the mounts (extract). `host` is where the RUN reaches the
 * runner: 127.0.0.1 when the build runs in the runner's network (docker
 * driver, classic client, host-network builders: the build asks for host
 * networking), or the gateway of a builder container's bridge network (the
 * build keeps its default network). The listener binds that one address.
 */
export class StreamTransport implements Transport {
  readonly overlapsDownloads = true
  readonly route

  constructor(
    readonly host: string,
    private readonly network: BuildNetwork,
    route: 'loopback' | 'gateway'
  ) {
    this.route = route
  }

  label(_phase: Phase): string {
    return this.route === 'loopback' ? 'loopback stream' : `gateway stream (${this.host})`
  }

  through(phase: Phase): string {
    return `the ${this.label(phase)}`
  }

  /** Any failure before the data reached the action may be the route: the next one is worth a try. */
  classify(error: unknown): 'fallback' | 'final' {
    return error instanceof LocalTransferError ? 'final' : 'fallback'
  }

  async inject(run: CommandRunner, job: InjectJob): Promise<Injected> {
    // The stream waits for downloads; the build on the other end waits with it.
    const listener = await listenOnce({ host: this.host, idleTimeoutMs: 0, sendAfterPeerEnds: true })
    const deadline = new Deadline(buildIdleMs(), buildTotalMs(job.bytes))
    const injected: number[] = []
    let stream: Readable | undefined
    const sent = listener.accepted.then(async socket => {
      const sources = async function* (): AsyncIterable<StreamMount> {
        for await (const m of job.ready) {
          injected.push(m.index)
          yield m
        }
      }
      stream = injectStream(sources())
      stream.on('data', () => deadline.touch())
      await pipeline(stream, socket)
    })
    sent.catch(() => undefined)
    const dockerfile = injectDockerfile(job.image, job.mounts, { host: this.host })
    log.debug(`Inject Dockerfile:\n${dockerfile}`)
    let manifests = new Map<number, string>()
    try {
      await runBuild(run, job.engine, {
        context: dockerfileContext(dockerfile),
        output: async out => {
          manifests = await readManifests(out)
        },
        onLine: line => log.debug(line),
        buildArgs: { ...job.buildArgs, ...listenerArgs(listener) },
        network: this.network,
        deadline
      })
    } catch (error) {
      stream?.destroy()
      throw error
    } finally {
      closeListener(listener, 'inject')
    }
    // The build unpacked the whole stream (it checks for the list that ends it), so sending is done.
    await sent
    return { injected, manifests: manifestsFor(manifests, injected) }
  }

  async extract(run: CommandRunner, job: ExtractJob): Promise<Extracted> {
    const listener = await listenOnce({ host: this.host })
    const deadline = new Deadline(buildIdleMs(), buildTotalMs(job.bytes))
    let socketOf: (() => void) | undefined
    const splitting = listener.accepted.then(socket => {
      socketOf = () => socket.destroy()
      socket.on('data', () => deadline.touch())
      return receiveExtract(socket, job.targets)
    })
    const settled = splitting.then(
      () => undefined,
      (error: unknown) => error
    )
    const dockerfile = extractDockerfile(job.image, job.mounts, { host: this.host })
    log.debug(`Extract Dockerfile:\n${dockerfile}`)
    try {
      await runBuild(run, job.engine, {
        context: dockerfileContext(dockerfile),
        onLine: line => log.debug(line),
        buildArgs: { ...job.buildArgs, ...listenerArgs(listener) },
        network: this.network,
        deadline
      })
    } catch (buildError) {
      // Whichever side failed first: a split that had already failed (full disk, an unsafe entry)
      // is why the build's nc died, and the exporter would fail the same way.
      const splitError = await splitOutcome(settled, socketOf)
      if (splitError !== undefined && !(splitError instanceof StreamCut)) throw new LocalTransferError(splitError)
      throw buildError
    } finally {
      closeListener(listener, 'extract')
    }
    try {
      return await splitting
    } catch (error) {
      throw new LocalTransferError(error)
    }
  }
}

/** The stream ended because the build failed and this side cut it: not a failure of the split itself. */
class StreamCut extends Error {}

/**
 * After a failed build: what the split ended with. A split still running
 * (the build died mid-stream) is cut now and reported as StreamCut; one that
 * never started (no connection) reports nothing.
 */
async function splitOutcome(settled: Promise<unknown>, cut: (() => void) | undefined): Promise<unknown> {
  if (cut === undefined) return undefined
  const early = await Promise.race([settled, Promise.resolve(RUNNING)])
  // A stream that ended early is the build's failure (it died mid-stream), not the split's.
  if (early !== RUNNING) return early !== undefined && TRUNCATED.test(errorMessage(early)) ? new StreamCut('cut') : early
  cut()
  await settled
  return new StreamCut('cut')
}

const RUNNING = Symbol('running')
/** How a split reports a stream that stopped before its end. */
const TRUNCATED = /unexpected end of data|premature close|ECONNRESET|socket hang up|aborted/i

function listenerArgs(listener: OneShotListener): Record<string, string> {
  return { [PORT_ARG]: String(listener.port), [TOKEN_ARG]: listener.token }
}

function closeListener(listener: OneShotListener, phase: Phase): void {
  listener.close()
  if (listener.rejected() > 0) log.warning(`The ${phase} listener dropped ${listener.rejected()} connection(s) without the token.`)
}
