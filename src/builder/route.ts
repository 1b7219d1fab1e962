import { BuildIoTransport } from './build-io-transport.js'
import type { BuildNetwork } from './engine.js'
import { StreamTransport } from './stream-transport.js'
import type { RouteName, Transport } from './transport.js'

/** The `extract-via` input: auto (a stream where one can reach the action, else build I/O), loopback (stream only), export (build I/O only). */
export type RouteChoice = 'auto' | 'loopback' | 'export'

/** Where a generated RUN can reach a listener of the action, and with which build network. */
export interface StreamReach {
  route: 'loopback' | 'gateway'
  host: string
  network: BuildNetwork
}

/** The builder shares the runner's network: 127.0.0.1, with host networking for the build. */
export const LOOPBACK: StreamReach = { route: 'loopback', host: '127.0.0.1', network: 'host' }

/**
 * The one place a phase's routes are chosen: the transports to try, in
 * order. `reach` is where a stream can reach the action on this builder
 * (undefined: nowhere, so no build is spent on a stream that cannot work);
 * `streamRefused` is true when an earlier phase of this job already found
 * the stream not working, so this phase does not try it again.
 */
export function routePlan(choice: RouteChoice, reach: StreamReach | undefined, streamRefused = false): Transport[] {
  const buildIo = new BuildIoTransport()
  if (choice === 'export') return [buildIo]
  if (choice === 'loopback') return [new StreamTransport(reach ?? LOOPBACK)]
  if (reach === undefined || streamRefused) return [buildIo]
  return [new StreamTransport(reach), buildIo]
}

/** What a phase recorded about its route, kept in the state for post. */
export interface RouteRecord {
  route: RouteName
  /** Why an earlier route of the plan was left (the stream did not work). */
  fallback?: string
}
