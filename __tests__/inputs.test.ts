// getInputs through a reader (as the action and the CLI call it): the one rule for the cache
// namespace, which the state loaded in post checks again.
import { expect, test } from '@jest/globals'

import { getInputs, withDefaults } from '../src/action/inputs.js'
import { isCacheNamespace } from '../src/mounts/sources.js'

const reader = (given: Record<string, string>) => withDefaults(name => given[name] ?? '')

test('a BUILDKIT_CACHE_MOUNT_NS the state could not carry is an input error naming build-args', () => {
  const read = reader({ mounts: 'id=a,target=/a', 'build-args': 'BUILDKIT_CACHE_MOUNT_NS=team/../x' })
  expect(() => getInputs(read)).toThrow(/^Input "build-args": BUILDKIT_CACHE_MOUNT_NS "team\/\.\.\/x" must be/)
  expect(isCacheNamespace('team/../x')).toBe(false)
})

test('an accepted namespace reaches the plan, and the defaults come from action.yml', () => {
  const inputs = getInputs(reader({ mounts: 'id=a,target=/a', 'build-args': 'BUILDKIT_CACHE_MOUNT_NS=team-1.x' }))
  expect(inputs.cacheNamespace).toBe('team-1.x')
  expect(isCacheNamespace('team-1.x')).toBe(true)
  expect([inputs.keyPrefix, inputs.utilityImage, inputs.client, inputs.extractVia, inputs.save]).toEqual([
    'buildkit-mount-cache',
    'ghcr.io/containerd/busybox:1.36',
    'auto',
    'auto',
    true
  ])
  expect(inputs.maxRestoreBytes).toBe(64 * 1024 ** 3)
})
