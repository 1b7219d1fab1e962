// getInputs through a reader (as the action and the CLI call it): the one rule for the cache
// namespace, which the state loaded in post checks again; delete-superseded and github-token.
import { describe, expect, jest, test } from '@jest/globals'

import { deleteSupersededInput, getInputs, githubTokenInput, withDefaults } from '../src/action/inputs.js'
import { parseCli, UsageError } from '../src/cli/args.js'
import { planMounts } from '../src/core/plan.js'
import { InputError } from '../src/errors.js'
import { isCacheNamespace } from '../src/mounts/sources.js'
import { FakeBuilder } from '../test-support/fakes/builder.js'
import { MemoryStore } from '../test-support/fakes/store.js'

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

describe('delete-superseded and github-token', () => {
  test('delete-superseded is false by default, a YAML boolean otherwise, and reaches the plan', async () => {
    expect(getInputs(reader({ mounts: 'id=a,target=/a' })).deleteSuperseded).toBe(false)
    const inputs = getInputs(reader({ mounts: 'id=a,target=/a', 'delete-superseded': 'True' }))
    expect(inputs.deleteSuperseded).toBe(true)
    const w = new FakeBuilder()
    const { state } = await planMounts({ run: w.run, cache: new MemoryStore(), hashFiles: async () => '' }, { ...inputs, client: 'docker' })
    expect(state.deleteSuperseded).toBe(true)
    const off = await planMounts(
      { run: w.run, cache: new MemoryStore(), hashFiles: async () => '' },
      { ...inputs, client: 'docker', deleteSuperseded: false }
    )
    expect(off.state).not.toHaveProperty('deleteSuperseded')
  })

  test('anything else is an input error naming delete-superseded', () => {
    expect(() => getInputs(reader({ mounts: 'id=a,target=/a', 'delete-superseded': 'yes' }))).toThrow(
      'Input "delete-superseded": must be true or false, got "yes"'
    )
    expect(() => deleteSupersededInput(reader({ 'delete-superseded': '1' }))).toThrow(InputError)
  })

  test('github-token: undefined when empty (no runner fills in its default here), masked in the log when given', () => {
    expect(githubTokenInput(reader({}))).toBeUndefined()
    const written: string[] = []
    const write = process.stdout.write.bind(process.stdout)
    process.stdout.write = ((chunk: string | Uint8Array): boolean => (written.push(String(chunk)), true)) as typeof process.stdout.write
    try {
      expect(githubTokenInput(reader({ 'github-token': ' ghs_abc123 ' }))).toBe('ghs_abc123')
    } finally {
      process.stdout.write = write
    }
    expect(written.join('')).toContain('::add-mask::ghs_abc123')
  })

  test('a github-token that is not one token is an input error that does not show it', () => {
    const silence = jest.spyOn(process.stdout, 'write').mockImplementation(() => true)
    try {
      const read = reader({ 'github-token': 'ghs_secret\nmore' })
      expect(() => githubTokenInput(read)).toThrow('Input "github-token": must be one token')
      expect(() => githubTokenInput(read)).not.toThrow(/ghs_secret/)
    } finally {
      silence.mockRestore()
    }
  })

  test('the token is not a command-line option of the CLI; delete-superseded is', () => {
    expect(() => parseCli(['save', '--github-token', 'ghs_x'])).toThrow(UsageError)
    expect(parseCli(['save', '--delete-superseded', 'true'])).toMatchObject({ kind: 'run', options: { inputs: { 'delete-superseded': 'true' } } })
  })
})
