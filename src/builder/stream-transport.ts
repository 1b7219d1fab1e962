import type { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'

import { injectStream } from '../archive/inject-stream.js'
import { errorMessage } from '../errors.js'
import { log } from '../log.js'
import { startProgress, type Progress } from '../progress.js'
import type { CommandRunner } from './command.js'
import { dockerfileContext } from './context-tar.js'
import { extractDockerfile, injectDockerfile, PORT_ARG, TOKEN_ARG } from './dockerfile.js'
import { buildDeadline } from './deadline.js'
import { runBuild, type BuildNetwork } from './engine.js'
import { listenOnce, type OneShotListener } from './listener.js'
import { readInjectResult, type InjectResult } from './manifests.js'
import { receiveExtract } from './receive.js'
import type { StreamReach } from './route.js'
import {
  LocalTransferError,
  PackedMounts,
  type Extracted,
  type ExtractJob,
  type Injected,
  type InjectJob,
  type Phase,
  type Transport
} from './transport.js'

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
  readonly route: StreamReach['route']
  private readonly host: string
  private readonly network: BuildNetwork

  constructor(reach: StreamReach) {
    ;({ route: this.route, host: this.host, network: this.network } = reach)
  }

  label(_phase: Phase): string {
    return this.route === 'loopback' ? 'loopback stream' : `gateway stream at ${this.host}`
  }

  through(phase: Phase): string {
    return `the ${this.label(phase)}`
  }

  /** Any failure before the data reached the action may be the route: the next one is worth a try. */
  classify(error: unknown): 'fallback' | 'final' {
    return error instanceof LocalTransferError ? 'final' : 'fallback'
  }

  async inject(run: CommandRunner, job: InjectJob): Promise<Injected> {
    const progress = startProgress('inject')
    try {
      return await this.injectCounted(run, job, progress)
    } finally {
      progress.stop()
    }
  }

  async extract(run: CommandRunner, job: ExtractJob): Promise<Extracted> {
    const progress = startProgress('extract')
    try {
      return await this.extractCounted(run, job, progress)
    } finally {
      progress.stop()
    }
  }

  private async injectCounted(run: CommandRunner, job: InjectJob, progress: Progress): Promise<Injected> {
    // The stream waits for downloads; the build on the other end waits with it.
    const listener = await listenOnce({ host: this.host, idleTimeoutMs: 0, sendAfterPeerEnds: true })
    const deadline = buildDeadline(job.bytes)
    const packed = new PackedMounts()
    let stream: Readable | undefined
    const sent = listener.accepted.then(async socket => {
      stream = injectStream(job.ready, packed.record)
      stream.on('data', (chunk: Buffer) => {
        deadline.touch()
        progress.add(chunk.length)
      })
      await pipeline(stream, socket)
    })
    sent.catch(() => undefined)
    const dockerfile = injectDockerfile(job.image, job.mounts, { host: this.host })
    log.debug(`Inject Dockerfile:\n${dockerfile}`)
    let received: InjectResult = { manifests: new Map(), listings: new Map() }
    try {
      await runBuild(run, job.engine, {
        context: dockerfileContext(dockerfile),
        output: async out => {
          received = await readInjectResult(out)
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
    return packed.result(received)
  }

  private async extractCounted(run: CommandRunner, job: ExtractJob, progress: Progress): Promise<Extracted> {
    const listener = await listenOnce({ host: this.host })
    const deadline = buildDeadline(job.bytes)
    let cut: (() => void) | undefined
    const splitting = listener.accepted.then(socket => {
      cut = () => socket.destroy()
      socket.on('data', (chunk: Buffer) => {
        deadline.touch()
        progress.add(chunk.length)
      })
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
        context: dockerfileContext(dockerfile, job.contextFiles),
        onLine: line => log.debug(line),
        buildArgs: { ...job.buildArgs, ...listenerArgs(listener) },
        network: this.network,
        deadline
      })
    } catch (buildError) {
      // A split that had failed on its own (full disk, an unsafe entry) is why the build's nc died,
      // and the exporter would fail the same way; anything else is the build's failure.
      const own = await ownSplitFailure(settled, cut)
      if (own !== undefined) throw new LocalTransferError(own)
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

/**
 * After a failed build: the split's own failure, if it had one. A split that
 * never started (no connection) or was still running (the build died
 * mid-stream: it is cut now) has none, and neither has one that ended on a
 * stream stopped short, which the dying build caused.
 */
async function ownSplitFailure(settled: Promise<unknown>, cut: (() => void) | undefined): Promise<unknown> {
  if (cut === undefined) return undefined
  const early = await Promise.race([settled, Promise.resolve(RUNNING)])
  if (early === RUNNING) {
    cut()
    await settled
    return undefined
  }
  return early !== undefined && !TRUNCATED.test(errorMessage(early)) ? early : undefined
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
