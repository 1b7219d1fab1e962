import { afterEach, beforeEach, describe, expect, test } from '@jest/globals'

import type { JobState } from '../src/core/job.js'
import { loadJobState, parseJobState, saveJobState, serializeJobState, StateError } from '../src/action/state.js'
import { ActionsEnv } from '../test-support/fakes/actions-env.js'

/** The job state as text: what main hands to post, and what a user may hand to save/ (so every field is checked). */
const digest = 'a'.repeat(64)
const full: JobState = {
  version: 2,
  engine: { client: 'buildx', builder: 'ci-builder' },
  utilityImage: 'busybox:1.36@sha256:0123',
  save: true,
  cacheNamespace: 'ns-1',
  extractVia: 'auto',
  maxRestoreBytes: 64 * 1024 ** 3,
  maxSize: 1024,
  deleteSuperseded: true,
  injectMs: 1200,
  inject: { route: 'build-io', fallback: 'ERROR: granting entitlement network.host is not allowed' },
  mounts: [
    {
      index: 0,
      spec: {
        id: 'npm',
        target: '/root/.npm',
        uid: 1000,
        gid: 1000,
        mode: 0o755,
        sharing: 'locked',
        keyFiles: ['package-lock.json'],
        exclude: ['_logs'],
        maxSize: 2048
      },
      keys: {
        base: 'bmc-ns-1_npm_12345678-linux-amd64-abc',
        restoreKeys: ['bmc-ns-1_npm_12345678-linux-amd64-abc-', 'bmc-ns-1_npm_12345678-linux-amd64-']
      },
      restore: { kind: 'injected', entry: { matchedKey: 'bmc-npm-linux-amd64-abc-0123456789abcdef', digest, bytes: 42 }, manifest: 'b'.repeat(32) },
      restoreMs: 15
    },
    { index: 1, spec: { id: 'apt', target: '/var/cache/apt' }, keys: { base: 'k1', restoreKeys: [] }, restore: { kind: 'miss' } },
    {
      index: 2,
      spec: { id: 'b', target: '/b' },
      keys: { base: 'k2', restoreKeys: [] },
      restore: { kind: 'refused', reason: 'cache service not available' }
    },
    {
      index: 3,
      spec: { id: 'c', target: '/c' },
      keys: { base: 'k3', restoreKeys: [] },
      restore: { kind: 'failed', reason: 'inject failed: x\ny', matchedKey: 'k3-1' }
    },
    { index: 4, spec: { id: 'd', target: '/d' }, keys: { base: 'k4', restoreKeys: [] }, restore: { kind: 'failed', reason: 'download failed' } },
    {
      index: 5,
      spec: { id: 'e', target: '/e' },
      keys: { base: 'k5', restoreKeys: [] },
      restore: { kind: 'restored', entry: { matchedKey: 'k5-1', digest, bytes: 0 } }
    },
    { index: 6, spec: { id: 'f', target: '/f' }, keys: { base: 'k6', restoreKeys: [] }, restore: { kind: 'pending' } },
    {
      index: 7,
      spec: { id: 'g', target: '/g' },
      keys: { base: 'k7', restoreKeys: [] },
      restore: { kind: 'injected', entry: { matchedKey: 'k7-1', digest, bytes: 1 } }
    }
  ]
}

const minimal: JobState = {
  version: 2,
  engine: { client: 'docker' },
  utilityImage: 'busybox:1.36',
  save: false,
  extractVia: 'export',
  maxRestoreBytes: 1024,
  mounts: []
}

describe('round trip', () => {
  test.each([
    ['every field and every restore status', full],
    ['the optional fields left out', minimal]
  ])('%s', (_name, state) => {
    const text = serializeJobState(state)
    expect(parseJobState(text)).toEqual(state)
    // Stable: the parsed state serializes to the same value (key order aside).
    expect(JSON.parse(serializeJobState(parseJobState(text) as JobState))).toEqual(JSON.parse(text))
  })

  test('the spec is stored in the input parser’s field names', () => {
    const stored = JSON.parse(serializeJobState(full)) as { mounts: { spec: Record<string, unknown> }[] }
    expect(stored.mounts[0]?.spec).toEqual({
      id: 'npm',
      target: '/root/.npm',
      uid: 1000,
      gid: 1000,
      mode: '0755',
      sharing: 'locked',
      'key-files': ['package-lock.json'],
      exclude: ['_logs'],
      'max-size': '2048'
    })
  })

  test('an empty text is no state', () => {
    expect(parseJobState('')).toBeUndefined()
  })

  test('fields main never writes are dropped, not kept', () => {
    const value = JSON.parse(serializeJobState(minimal)) as Record<string, unknown>
    value.archivePath = '/etc/passwd'
    value.docker = '/tmp/evil'
    const parsed = parseJobState(JSON.stringify(value)) as unknown as Record<string, unknown>
    expect(parsed).toEqual(minimal)
    expect(parsed).not.toHaveProperty('archivePath')
    expect(parsed).not.toHaveProperty('docker')
  })
})

describe('refused', () => {
  type Edit = (s: Record<string, any>) => void // eslint-disable-line @typescript-eslint/no-explicit-any
  const cases: [string, Edit, RegExp][] = [
    ['another version', s => (s.version = 1), /another version/],
    ['no version', s => delete s.version, /another version/],
    ['a program as the client', s => (s.engine.client = '/usr/bin/docker'), /state\.engine\.client must be one of buildx, docker/],
    ['a path as the builder', s => (s.engine.builder = '../../bin/sh'), /state\.engine\.builder must be a string/],
    ['an image with a space', s => (s.utilityImage = 'busybox; rm -rf /'), /state\.utilityImage/],
    ['an image with uppercase', s => (s.utilityImage = 'Busybox'), /state\.utilityImage/],
    ['engine not an object', s => (s.engine = 'docker'), /state\.engine must be an object/],
    ['save not a boolean', s => (s.save = 'true'), /state\.save must be true or false/],
    ['deleteSuperseded not a boolean', s => (s.deleteSuperseded = 'yes'), /state\.deleteSuperseded must be true or false/],
    ['an unknown route choice', s => (s.extractVia = 'ssh'), /state\.extractVia must be one of auto, loopback, export/],
    ['a negative size', s => (s.maxRestoreBytes = -1), /state\.maxRestoreBytes must be a non-negative integer/],
    ['a fractional size', s => (s.maxSize = 1.5), /state\.maxSize must be a non-negative integer/],
    ['a namespace with a slash', s => (s.cacheNamespace = 'a/../b'), /state\.cacheNamespace/],
    ['an unknown inject route', s => (s.inject = { route: 'ssh' }), /state\.inject\.route/],
    ['a fallback reason with a newline', s => (s.inject = { route: 'build-io', fallback: 'a\nb' }), /state\.inject\.fallback/],
    ['mounts not a list', s => (s.mounts = {}), /state\.mounts must be a list/],
    ['too many mounts', s => (s.mounts = Array.from({ length: 1001 }, () => ({}))), /state\.mounts must be a list/],
    ['a mount not an object', s => (s.mounts[0] = 'npm'), /state\.mounts\[0\] must be an object/],
    ['a relative target', s => (s.mounts[1].spec.target = 'root/.npm'), /state\.mounts\[1\]\.spec.*absolute/],
    ['an id with a comma', s => (s.mounts[1].spec.id = 'a,source=/'), /state\.mounts\[1\]\.spec.*id/],
    ['an unknown spec field', s => (s.mounts[1].spec.source = '/etc'), /unknown option "source"/],
    ['an exclude with ..', s => (s.mounts[0].spec.exclude = ['../x']), /must be relative to the mount root/],
    ['a key with a slash', s => (s.mounts[1].keys.base = 'a/b'), /state\.mounts\[1\]\.keys\.base/],
    ['a restore key with a space', s => (s.mounts[0].keys.restoreKeys[1] = 'a b'), /state\.mounts\[0\]\.keys\.restoreKeys\[1\]/],
    ['a digest that is not hex', s => (s.mounts[0].restore.entry.digest = 'zz'.repeat(32)), /state\.mounts\[0\]\.restore\.entry\.digest/],
    ['a manifest of the wrong length', s => (s.mounts[0].restore.manifest = 'abc'), /state\.mounts\[0\]\.restore\.manifest/],
    ['a manifest with shell text', s => (s.mounts[0].restore.manifest = '$(reboot)'.padEnd(32, 'a')), /restore\.manifest/],
    ['an unknown restore kind', s => (s.mounts[1].restore = { kind: 'hit' }), /state\.mounts\[1\]\.restore\.kind must be one of/],
    ['a refused status without a reason', s => (s.mounts[2].restore = { kind: 'refused' }), /state\.mounts\[2\]\.restore\.reason/],
    ['a matched key with a slash', s => (s.mounts[3].restore.matchedKey = '../k'), /state\.mounts\[3\]\.restore\.matchedKey/],
    ['an index out of place', s => (s.mounts[1].index = 5), /state\.mounts\[1\]\.index must be 1/],
    ['a negative restore time', s => (s.mounts[0].restoreMs = -3), /state\.mounts\[0\]\.restoreMs/],
    [
      'the same id twice',
      s => {
        s.mounts[1].spec.id = 'npm'
      },
      /state\.mounts lists cache id "npm" twice/
    ]
  ]
  test.each(cases)('%s', (_name, edit, message) => {
    const value = JSON.parse(serializeJobState(full)) as Record<string, unknown>
    edit(value)
    const text = JSON.stringify(value)
    expect(() => parseJobState(text)).toThrow(StateError)
    expect(() => parseJobState(text)).toThrow(message)
  })

  test.each([
    ['not JSON', '{"version": 2', /not JSON/],
    ['a list', '[]', /state must be an object/],
    ['null', 'null', /state must be an object/],
    ['a number', '2', /state must be an object/]
  ])('%s', (_name, text, message) => {
    expect(() => parseJobState(text)).toThrow(StateError)
    expect(() => parseJobState(text)).toThrow(message)
  })
})

describe('through the step state', () => {
  let env: ActionsEnv
  beforeEach(() => {
    env = new ActionsEnv().install({ 'STATE_mount-cache-state': undefined })
  })
  afterEach(() => env.dispose())

  test('saveJobState writes GITHUB_STATE; post reads it back from STATE_mount-cache-state', () => {
    saveJobState(full)
    expect(env.state()).toEqual({ 'mount-cache-state': serializeJobState(full) })
    expect(loadJobState()).toBeUndefined()
    env.handStateToPost()
    expect(loadJobState()).toEqual(full)
  })

  test('a state the step did not write (tampered) is refused on load', () => {
    env.set({ 'STATE_mount-cache-state': JSON.stringify({ ...JSON.parse(serializeJobState(minimal)), utilityImage: 'evil image' }) })
    expect(() => loadJobState()).toThrow(StateError)
  })
})
