import { describe, expect, test } from '@jest/globals'

import type { CommandRunner } from '../src/builder/command.js'
import { buildInvocation, resolveEngine, type ClientChoice, type Engine } from '../src/builder/engine.js'
import { CommandError, InputError } from '../src/errors.js'

const withBuildx: CommandRunner = async () => ({ stdout: 'github.com/docker/buildx v0.13.1', stderr: '' })
const withoutBuildx: CommandRunner = async (cmd, args) => {
  throw new CommandError([cmd, ...args], 1, "docker: 'buildx' is not a docker command.")
}

describe('resolveEngine', () => {
  test.each([
    [1, withBuildx, 'auto', undefined, { client: 'buildx', docker: 'docker' }],
    [2, withoutBuildx, 'auto', undefined, { client: 'docker', docker: 'docker' }],
    [3, withBuildx, 'docker', undefined, { client: 'docker', docker: 'docker' }],
    [4, withBuildx, 'buildx', 'ci-builder', { client: 'buildx', builder: 'ci-builder', docker: 'docker' }]
  ] as [number, CommandRunner, ClientChoice, string | undefined, Engine][])('%i', async (_n, run, choice, builder, expected) => {
    await expect(resolveEngine(run, choice, builder)).resolves.toEqual(expected)
  })

  test.each([
    [1, withoutBuildx, 'buildx', undefined, 'client'],
    [2, withoutBuildx, 'auto', 'b', 'builder'],
    [3, withBuildx, 'docker', 'b', 'builder']
  ] as [number, CommandRunner, ClientChoice, string | undefined, string][])('%i: input error', async (_n, run, choice, builder, input) => {
    await expect(resolveEngine(run, choice, builder)).rejects.toEqual(expect.objectContaining({ input, name: 'InputError' }))
    await expect(resolveEngine(run, choice, builder)).rejects.toBeInstanceOf(InputError)
  })
})

describe('buildInvocation', () => {
  test.each([
    [
      1,
      { client: 'buildx', docker: 'docker' },
      [
        'buildx',
        'build',
        '--provenance=false',
        '--progress=plain',
        '--network=none',
        '--build-arg',
        'BMC_NONCE=n',
        '--output',
        'type=tar,dest=-',
        '-'
      ],
      undefined
    ],
    [
      2,
      { client: 'buildx', builder: 'b1', docker: 'docker' },
      [
        'buildx',
        'build',
        '--builder',
        'b1',
        '--provenance=false',
        '--progress=plain',
        '--network=none',
        '--build-arg',
        'BMC_NONCE=n',
        '--output',
        'type=tar,dest=-',
        '-'
      ],
      undefined
    ],
    [
      3,
      { client: 'docker', docker: '/usr/bin/docker' },
      ['build', '--progress=plain', '--network=none', '--build-arg', 'BMC_NONCE=n', '--output', 'type=tar,dest=-', '-'],
      '1'
    ]
  ] as [number, Engine, string[], string | undefined][])('%i', (_n, engine, args, buildkit) => {
    const inv = buildInvocation(engine, 'n', {})
    expect(inv.command).toBe(engine.docker)
    expect(inv.args).toEqual(args)
    expect(inv.env.DOCKER_BUILDKIT).toBe(buildkit)
  })
})

test('host networking asks buildx for the network.host entitlement; classic docker build has no such flag', () => {
  const buildx = buildInvocation({ client: 'buildx', builder: 'b1', docker: 'docker' }, 'n', {}, {}, 'host').args
  expect(buildx.slice(0, 8)).toEqual(['buildx', 'build', '--builder', 'b1', '--provenance=false', '--allow', 'network.host', '--progress=plain'])
  expect(buildx).toContain('--network=host')
  const classic = buildInvocation({ client: 'docker', docker: 'docker' }, 'n', {}, {}, 'host').args
  expect(classic).not.toContain('--allow')
  expect(classic).toContain('--network=host')
})

test('a directory context goes last instead of stdin', () => {
  const args = buildInvocation({ client: 'docker', docker: 'docker' }, 'n', {}, {}, 'none', '/tmp/ctx').args
  expect(args.at(-1)).toBe('/tmp/ctx')
  expect(args).not.toContain('-')
})
