// Where a generated RUN can reach the runner, found by asking the engine: `docker buildx inspect`
// text as buildx 0.29 prints it, `docker inspect` of the node's container, and this machine's
// addresses, all scripted.
import { describe, expect, test } from '@jest/globals'

import type { CommandRunner } from '../src/builder/command.js'
import type { Engine } from '../src/builder/engine.js'
import { findReach, parseInspect } from '../src/builder/reach.js'
import { LOOPBACK } from '../src/builder/route.js'
import { CommandError } from '../src/errors.js'
import { useWorld } from '../test-support/fakes/harness.js'

useWorld(() => undefined)

const CONTAINER = `Name:          bmc-container
Driver:        docker-container
Last Activity: 2026-12-01 20:32:51 +0000 UTC

Nodes:
Name:                  bmc-container0
Endpoint:              unix:///run/buildkit-mount-cache-runner/docker.sock
Status:                running
BuildKit daemon flags: --allow-insecure-entitlement security.insecure --allow-insecure-entitlement network.host
BuildKit version:      v0.13.2+debian-26.1.5+dfsg1-9+deb13u1
Labels:
 org.mobyproject.buildkit.worker.network:          host
`
const HOST_NETWORK = CONTAINER.replace('bmc-container0', 'bmc-container-host0').replace('Status:', 'Driver Options:        network="host"\nStatus:')
const DOCKER_DRIVER = `Name:          default
Driver:        docker
Last Activity: 2026-12-01 20:29:43 +0000 UTC

Nodes:
Name:             default
Endpoint:         default
Status:           running
`

/** A docker CLI that answers `buildx inspect` and `inspect` from a script, recording each call. */
function docker(script: { inspect?: string | Error; container?: string | Error }): { run: CommandRunner; calls: string[][] } {
  const calls: string[][] = []
  const answer = async (value: string | Error | undefined, argv: string[]): Promise<{ stdout: string; stderr: string }> => {
    if (value === undefined || value instanceof Error) throw new CommandError(argv, 1, value?.message ?? 'not scripted')
    return { stdout: value, stderr: '' }
  }
  const run: CommandRunner = async (command, args) => {
    const argv = [command, ...args]
    calls.push(argv)
    return answer(args[0] === 'buildx' ? script.inspect : script.container, argv)
  }
  return { run, calls }
}

const buildx: Engine = { client: 'buildx', docker: 'docker', builder: 'bmc-container' }
const mine = (): Set<string> => new Set(['127.0.0.1', '10.229.41.1'])

describe('parseInspect', () => {
  test('the driver, the first node and its driver options', () => {
    expect(parseInspect(CONTAINER)).toEqual({ driver: 'docker-container', node: 'bmc-container0' })
    expect(parseInspect(HOST_NETWORK)).toEqual({ driver: 'docker-container', node: 'bmc-container-host0', driverOptions: 'network="host"' })
    expect(parseInspect(DOCKER_DRIVER)).toEqual({ driver: 'docker', node: 'default' })
    expect(parseInspect('no such builder')).toBeUndefined()
  })
})

describe('findReach', () => {
  test('the classic client: loopback, without asking buildx', async () => {
    const d = docker({})
    expect(await findReach(d.run, { client: 'docker', docker: 'docker' }, mine)).toEqual(LOOPBACK)
    expect(d.calls).toEqual([])
  })

  test('the docker driver: loopback with host networking', async () => {
    const d = docker({ inspect: DOCKER_DRIVER })
    expect(await findReach(d.run, { client: 'buildx', docker: 'docker' }, mine)).toEqual(LOOPBACK)
    expect(d.calls).toEqual([['docker', 'buildx', 'inspect', '--bootstrap']])
  })

  test("a docker-container builder on a bridge: that bridge's gateway, in the build's default network", async () => {
    const d = docker({ inspect: CONTAINER, container: 'bridge|10.229.41.1 \n' })
    expect(await findReach(d.run, buildx, mine)).toEqual({ route: 'gateway', host: '10.229.41.1', network: 'default' })
    expect(d.calls.map(c => c.at(-1))).toEqual(['--bootstrap', 'buildx_buildkit_bmc-container0'])
  })

  test('a gateway that is no address of this machine (the builder runs elsewhere): no stream', async () => {
    const d = docker({ inspect: CONTAINER, container: 'bridge|172.18.0.1 \n' })
    expect(await findReach(d.run, buildx, mine)).toBeUndefined()
  })

  test('a host-network builder, by driver option or by its container: 127.0.0.1 without host networking', async () => {
    const expected = { ...LOOPBACK, network: 'default' }
    expect(await findReach(docker({ inspect: HOST_NETWORK }).run, buildx, mine)).toEqual(expected)
    expect(await findReach(docker({ inspect: CONTAINER, container: 'host|\n' }).run, buildx, mine)).toEqual(expected)
  })

  test('remote and kubernetes drivers, or a node container this daemon does not have: no stream', async () => {
    for (const driver of ['remote', 'kubernetes', 'cloud']) {
      expect(await findReach(docker({ inspect: CONTAINER.replace('docker-container', driver) }).run, buildx, mine)).toBeUndefined()
    }
    expect(await findReach(docker({ inspect: CONTAINER, container: new Error('No such container') }).run, buildx, mine)).toBeUndefined()
  })

  test('an engine that cannot be asked: the loopback stream is tried (its failure falls back later)', async () => {
    expect(await findReach(docker({ inspect: new Error('ERROR: no builder "x" found') }).run, buildx, mine)).toEqual(LOOPBACK)
    expect(await findReach(docker({ inspect: 'garbage' }).run, buildx, mine)).toEqual(LOOPBACK)
  })
})
