import { expect, test } from '@jest/globals'

import { idSegment, keyHasDigest, mountKeys, platformSegment, runnerPlatform, saveKey } from '../src/core/keys.js'

test('id segments are readable and distinct', () => {
  expect(idSegment('npm')).toBe('npm')
  expect(idSegment('/root/.npm')).toMatch(/^root_.npm_[0-9a-f]{8}$/)
  expect(idSegment('a/b')).not.toBe(idSegment('a_b'))
})

test('platforms', () => {
  expect(platformSegment('linux/arm64/v8')).toBe('linux-arm64-v8')
  expect(runnerPlatform('linux', 'x64')).toBe('linux/amd64')
  expect(runnerPlatform('linux', 'arm64')).toBe('linux/arm64')
})

test('keys roll with content and fall back from files hash to mount family', () => {
  const keys = mountKeys('p', 'npm', 'linux/amd64', 'abc')
  expect(keys).toEqual({ base: 'p-npm-linux-amd64-abc', restoreKeys: ['p-npm-linux-amd64-abc-', 'p-npm-linux-amd64-'] })
  const digest = 'f'.repeat(64)
  expect(saveKey(keys, digest)).toBe(`p-npm-linux-amd64-abc-${'f'.repeat(16)}`)
  expect(keyHasDigest(saveKey(keys, digest), keys, digest)).toBe(true)
  expect(keyHasDigest('p-npm-linux-amd64-abc-0000', keys, digest)).toBe(false)
  expect(mountKeys('p', 'npm', 'linux/amd64', '').base).toBe('p-npm-linux-amd64-nofiles')
})
