import type { SplitSummary, SplitTarget } from '../archive/split.js'
import type { StreamMount } from '../archive/inject-stream.js'
import type { ReadyQueue } from '../core/ready-queue.js'
import { errorMessage } from '../errors.js'
import { oneLine } from '../format.js'
import { log } from '../log.js'
import type { CommandRunner } from './command.js'
import { resultFor, type InjectResult } from './manifests.js'
import type { IndexedMount } from './dockerfile.js'
import type { Engine } from './engine.js'

/**
 * How the mounts' bytes move between the action and the builder. One
 * implementation per route, each owning its Dockerfile variant, its
 * listener (if any) and the classification of its failures:
 *
 *   stream     a one-shot, token-checked TCP listener of the action that the
 *              generated RUN connects to (`nc HOST PORT`); HOST is 127.0.0.1
 *              where the builder shares the runner's network, or the gateway
 *              of the builder container's network (stream-transport.ts)
 *   build-io   the build's own channels: the inject stream as a file of the
 *              build context, the extract stream as the build's exported
 *              result (build-io-transport.ts)
 *
 * The route is chosen in one place (route.ts), once per phase.
 */
export type RouteName = 'loopback' | 'gateway' | 'build-io'

export interface InjectJob {
  engine: Engine
  image: string
  /** Every mount that may receive files; the ones never restored stay as BuildKit creates them. */
  mounts: IndexedMount[]
  /** Restored archives, pushed as each download is checked; ended when every restore settled. */
  ready: ReadyQueue<StreamMount>
  buildArgs: Record<string, string>
  /** Bytes known to be coming (the total bound of the build grows with them). */
  bytes: number
}

export interface Injected {
  /** Indexes of the mounts whose archive went into the builder. */
  injected: number[]
  /** Mounts the stream began and dropped (emptied again in the builder), with the reason. */
  dropped: Map<number, string>
  /** Each injected mount's manifest, when the build could compute one. */
  manifests: Map<number, string>
  /** The listings inject kept (mounts that may be saved as deltas), by index. */
  listings: Map<number, Buffer>
}

export interface ExtractJob {
  engine: Engine
  image: string
  mounts: IndexedMount[]
  targets: SplitTarget[]
  /** Every generated build's arguments plus each mount's manifest and delta arguments. */
  buildArgs: Record<string, string>
  /** Files next to the Dockerfile in the build context: the listings of mounts asked for deltas. */
  contextFiles: Map<string, Buffer>
  /** Bytes expected (what was injected): the total bound of the build grows with them. */
  bytes: number
}

export interface Extracted {
  /** Per mount directory that was archived (whole, or as a delta). */
  summaries: Map<string, SplitSummary>
  /** Mount directories the build found unchanged since inject (not archived). */
  unchanged: Set<string>
}

export interface Transport {
  readonly route: RouteName
  /** The route in a few words for the phase's log line: "loopback stream", "build context", "build exporter". */
  label(phase: Phase): string
  /** The same as the object of "through ...": "the build context", "the build's exporter". */
  through(phase: Phase): string
  /** false: inject takes every archive at once, so downloads are awaited before it starts. */
  readonly overlapsDownloads: boolean
  inject(run: CommandRunner, job: InjectJob): Promise<Injected>
  extract(run: CommandRunner, job: ExtractJob): Promise<Extracted>
  /**
   * `fallback`: this route does not work here (the next route may);
   * `final`: the data reached the action and failed there, so no route would
   * do better.
   */
  classify(error: unknown): 'fallback' | 'final'
}

export type Phase = 'inject' | 'extract'

/** A failure on the action's side of a route (the stream arrived but could not be split and stored). */
export class LocalTransferError extends Error {
  constructor(cause: unknown) {
    super(errorMessage(cause), { cause })
    this.name = 'LocalTransferError'
  }
}

export interface PhaseRun<T> {
  result: T
  transport: Transport
  /** Why an earlier route of the plan was left, when one was. */
  fallbackReason?: string
}

/** A failure reason in one short line, for the fallback's log line. */
export function shortReason(error: unknown): string {
  return oneLine(errorMessage(error), 160) || 'unknown error'
}

/**
 * Runs one phase over the plan's routes in order: the first that works
 * wins; a route's `fallback` failure moves on to the next with one short log
 * line; a `final` failure, or the last route's, is thrown.
 */
export async function runPhase<T>(plan: readonly Transport[], phase: Phase, attempt: (t: Transport) => Promise<T>): Promise<PhaseRun<T>> {
  let fallbackReason: string | undefined
  for (let i = 0; ; i++) {
    const transport = plan[i]
    if (transport === undefined) throw new Error(`no route to ${phase} by`)
    const next = plan[i + 1]
    try {
      const result = await attempt(transport)
      return { result, transport, ...(fallbackReason !== undefined ? { fallbackReason } : {}) }
    } catch (error) {
      if (next === undefined || transport.classify(error) === 'final') throw error
      fallbackReason = shortReason(error)
      log.info(
        `${capitalize(transport.label(phase))} not available (${fallbackReason}); ${phase === 'inject' ? 'injecting' : 'extracting'} through ${next.through(phase)} instead.`
      )
    }
  }
}

const capitalize = (s: string): string => s.charAt(0).toUpperCase() + s.slice(1)

/** What the inject stream did with each mount it took (its OnPacked), and the result of the build that received it. */
export class PackedMounts {
  private readonly injected: number[] = []
  private readonly dropped = new Map<number, string>()

  readonly record = (index: number, error?: unknown): void => {
    if (error === undefined) this.injected.push(index)
    else this.dropped.set(index, errorMessage(error))
  }

  result(received: InjectResult): Injected {
    return { injected: [...this.injected], dropped: new Map(this.dropped), ...resultFor(received, this.injected) }
  }
}
