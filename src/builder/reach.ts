import { networkInterfaces } from 'node:os'

import { errorMessage } from '../errors.js'
import { log } from '../log.js'
import type { CommandRunner } from './command.js'
import { Deadline, shortCallMs } from './deadline.js'
import type { Engine } from './engine.js'
import { LOOPBACK, type StreamReach } from './route.js'

/** What `docker buildx inspect` says about a builder. */
export interface BuilderInfo {
  driver: string
  /** The first node's name (docker-container: its container is buildx_buildkit_<node>). */
  node?: string
  /** The first node's driver options, e.g. network="host". */
  driverOptions?: string
}

/** Parses `docker buildx inspect` text: the builder's driver, its first node and that node's driver options. */
export function parseInspect(text: string): BuilderInfo | undefined {
  const lines = text.split('\n')
  const value = (line: string | undefined): string => (line === undefined ? '' : line.slice(line.indexOf(':') + 1).trim())
  const driver = value(lines.find(l => /^Driver:/.test(l)))
  if (driver === '') return undefined
  const nodesAt = lines.findIndex(l => /^Nodes:/.test(l))
  const nodeLines = nodesAt < 0 ? [] : lines.slice(nodesAt + 1)
  const node = value(nodeLines.find(l => /^Name:/.test(l)))
  const driverOptions = value(nodeLines.find(l => /^Driver Options:/.test(l)))
  return { driver, ...(node !== '' ? { node } : {}), ...(driverOptions !== '' ? { driverOptions } : {}) }
}

/** The IPv4 addresses of this machine's interfaces: a listener can only bind one of these. */
export function localAddresses(): Set<string> {
  const out = new Set<string>()
  for (const list of Object.values(networkInterfaces())) for (const a of list ?? []) if (a.family === 'IPv4') out.add(a.address)
  return out
}

/**
 * Where a generated RUN on this engine's builder can reach a listener of the
 * action, found by asking the engine (never by a failed build):
 *  - classic `docker build`, buildx's docker driver: the builder is the
 *    daemon, whose RUNs share the runner's network with host networking:
 *    127.0.0.1;
 *  - docker-container builder on the host network (`--driver-opt
 *    network=host`): 127.0.0.1 in the RUN's default network (the builder
 *    container's namespace is the runner's);
 *  - docker-container builder on a bridge: the bridge's gateway, an address
 *    of the runner, in the RUN's default network (no entitlement needed);
 *  - anything else (remote, kubernetes, cloud drivers, a builder on another
 *    machine): nowhere, so the build's own channels are used from the start.
 * When the engine cannot be asked, the loopback stream is tried (and falls
 * back if it does not work).
 */
export async function findReach(run: CommandRunner, engine: Engine, local: () => Set<string> = localAddresses): Promise<StreamReach | undefined> {
  if (engine.client === 'docker') return LOOPBACK
  let info: BuilderInfo | undefined
  try {
    const args = ['buildx', 'inspect', ...(engine.builder ? [engine.builder] : []), '--bootstrap']
    info = parseInspect((await run(engine.docker, args, { deadline: new Deadline(2 * shortCallMs()) })).stdout)
  } catch (error) {
    log.debug(`docker buildx inspect failed (${errorMessage(error)}); trying the loopback stream`)
    return LOOPBACK
  }
  if (info === undefined) return LOOPBACK
  const reach = await reachOf(run, engine, info, local)
  log.info(`Builder: ${info.driver} driver${info.node ? ` (node ${info.node})` : ''}; streams ${describe(reach)}`)
  return reach
}

async function reachOf(run: CommandRunner, engine: Engine, info: BuilderInfo, local: () => Set<string>): Promise<StreamReach | undefined> {
  if (info.driver === 'docker') return LOOPBACK
  if (info.driver !== 'docker-container' || info.node === undefined) return undefined
  if (/\bnetwork="?host"?/.test(info.driverOptions ?? '')) return { ...LOOPBACK, network: 'default' }
  const container = `buildx_buildkit_${info.node}`
  let networks: { mode: string; gateways: string[] }
  try {
    const format = '{{.HostConfig.NetworkMode}}|{{range .NetworkSettings.Networks}}{{.Gateway}} {{end}}'
    const out = (
      await run(engine.docker, ['inspect', '--type', 'container', '--format', format, container], { deadline: new Deadline(shortCallMs()) })
    ).stdout
    const [mode = '', gateways = ''] = out.trim().split('|')
    networks = { mode, gateways: gateways.split(' ').filter(g => g !== '') }
  } catch (error) {
    // Not a container of this daemon: the builder runs elsewhere.
    log.debug(`docker inspect ${container} failed: ${errorMessage(error)}`)
    return undefined
  }
  if (networks.mode === 'host') return { ...LOOPBACK, network: 'default' }
  const mine = local()
  const gateway = networks.gateways.find(g => mine.has(g))
  return gateway === undefined ? undefined : { route: 'gateway', host: gateway, network: 'default' }
}

function describe(reach: StreamReach | undefined): string {
  if (reach === undefined) return 'cannot reach the runner: the build context and exporter carry the data'
  return reach.route === 'gateway' ? `reach the runner at the builder network's gateway ${reach.host}` : 'reach the runner at 127.0.0.1'
}
