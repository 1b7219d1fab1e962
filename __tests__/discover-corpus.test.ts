// Discovery over Dockerfiles shaped like common real-world projects.
import { readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'

import { expect, test } from '@jest/globals'

import { discoverMounts } from '../src/discover/index.js'
import type { MountSpec } from '../src/mounts/spec.js'

const dir = join(dirname(new URL(import.meta.url).pathname), 'fixtures/dockerfiles')

function discover(name: string, platforms = ['linux/amd64']): { mounts: [MountSpec, string[]][]; warnings: string[] } {
  const result = discoverMounts({
    dockerfiles: [{ path: name, content: readFileSync(join(dir, name), 'utf8') }],
    buildArgs: {},
    platforms,
    buildPlatform: 'linux/amd64'
  })
  return { mounts: result.mounts.map(m => [m.spec, m.platforms]), warnings: result.warnings }
}

const all = ['linux/amd64']

test.each([
  [
    'uv.Dockerfile',
    [
      [{ id: '/var/cache/apt', target: '/var/cache/apt', sharing: 'locked' }, all],
      [{ id: '/var/lib/apt', target: '/var/lib/apt', sharing: 'locked' }, all],
      [{ id: 'tool-caches', target: '/buildkit-cache', sharing: 'locked' }, all],
      [{ id: '/root/target', target: '/root/target' }, all]
    ]
  ],
  [
    'go.Dockerfile',
    [
      [{ id: '/home/app/go/pkg/mod', target: '/home/app/go/pkg/mod', uid: 1000, gid: 1000 }, all],
      [{ id: '/home/app/.cache/go-build', target: '/home/app/.cache/go-build', uid: 1000, gid: 1000 }, all]
    ]
  ],
  [
    'node.Dockerfile',
    [
      [{ id: '/root/.npm', target: '/root/.npm' }, all],
      [{ id: 'pnpm', target: '/pnpm/store' }, all],
      [{ id: '/usr/local/share/.cache/yarn', target: '/usr/local/share/.cache/yarn', sharing: 'locked' }, all]
    ]
  ],
  [
    'ccache.Dockerfile',
    [
      [{ id: '/var/cache/apt', target: '/var/cache/apt', sharing: 'locked' }, all],
      [{ id: '/ccache', target: '/ccache', mode: 0o777 }, all]
    ]
  ],
  [
    'jvm.Dockerfile',
    [
      [{ id: '/root/.m2', target: '/root/.m2' }, all],
      [{ id: '/home/gradle/.gradle', target: '/home/gradle/.gradle', uid: 1000, gid: 1000 }, all]
    ]
  ]
] as [string, [MountSpec, string[]][]][])('%s', (name, expected) => {
  const found = discover(name)
  expect(found.warnings).toEqual([])
  expect(found.mounts).toEqual(expected)
})

test('a platform-dependent id is one cache per platform; a plain one is shared by both', () => {
  const found = discover('platform.Dockerfile', ['linux/amd64', 'linux/arm64'])
  expect(found.warnings).toEqual([])
  const byId = [...found.mounts].sort(([a], [b]) => a.id.localeCompare(b.id))
  expect(byId).toEqual([
    [{ id: '/root/.cache/shared', target: '/root/.cache/shared' }, ['linux/amd64', 'linux/arm64']],
    [{ id: 'npm-amd64', target: '/root/.npm', sharing: 'locked' }, ['linux/amd64']],
    [{ id: 'npm-arm64', target: '/root/.npm', sharing: 'locked' }, ['linux/arm64']]
  ])
})
