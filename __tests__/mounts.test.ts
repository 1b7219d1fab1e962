import { describe, expect, test } from '@jest/globals'

import { InputError } from '../src/errors.js'
import { cleanTarget, parseMounts, parseSize } from '../src/mounts/spec.js'

describe('parseMounts', () => {
  test.each([
    [1, 'id=npm,target=/root/.npm', [{ id: 'npm', target: '/root/.npm' }]],
    [2, 'target=/var/cache/apt/', [{ id: '/var/cache/apt', target: '/var/cache/apt' }]],
    [
      3,
      '--mount=type=cache,dst=/go/pkg/mod,uid=1000,gid=1001,mode=0700,sharing=locked',
      [{ id: '/go/pkg/mod', target: '/go/pkg/mod', uid: 1000, gid: 1001, mode: 0o700, sharing: 'locked' }]
    ],
    [
      4,
      'id=a,target=/a\n\n# comment\nid=b,destination=/b,mode=755',
      [
        { id: 'a', target: '/a' },
        { id: 'b', target: '/b', mode: 0o755 }
      ]
    ],
    [5, '[{"id":"x","target":"/x","uid":0,"mode":"0755"}]', [{ id: 'x', target: '/x', uid: 0, mode: 0o755 }]],
    [6, '  ', []]
  ])('%i: %j', (_n, text, expected) => {
    expect(parseMounts(text)).toEqual(expected)
  })

  test.each([
    [1, 'id=a', /needs a target/],
    [2, 'id=a,target=relative', /absolute/],
    [3, 'id=a b,target=/a', /id "a b"/],
    [4, 'id=$HOME,target=/a', /id/],
    [5, 'id="q,target=/a', /matching double-quote/],
    [6, 'id=a,target=/a,uid=-1', /uid must be/],
    [7, 'id=a,target=/a,gid=1.5', /gid must be/],
    [8, 'id=a,target=/a,mode=0999', /mode must be an octal/],
    [9, 'id=a,target=/a,sharing=sometimes', /sharing must be/],
    [10, 'id=a,target=/a,type=bind', /type must be "cache"/],
    [11, 'id=a,target=/a,colour=blue', /unknown option "colour"/],
    [12, 'id=a,target=/a\nid=a,target=/b', /listed twice/],
    [13, '[{"id":"a"', /not valid JSON/],
    [14, '{"id":"a"}', /unknown option|needs a target/],
    [15, 'id=a,id=b,target=/a', /given twice/],
    [16, `id=${'x'.repeat(201)},target=/a`, /at most 200/]
  ])('%i: refuses %j', (_n, text, message) => {
    let error: unknown
    try {
      parseMounts(text)
    } catch (e) {
      error = e
    }
    expect(error).toBeInstanceOf(InputError)
    expect((error as Error).message).toMatch(/^Input "mounts/)
    expect((error as Error).message).toMatch(message)
  })
})

test('cleanTarget cleans like filepath.Clean', () => {
  expect(cleanTarget('/a//b/./c/')).toBe('/a/b/c')
  expect(cleanTarget('/a/../b')).toBe('/b')
  expect(cleanTarget('/')).toBe('/')
})

test('per-mount key files', () => {
  expect(parseMounts('id=apt,target=/var/cache/apt,key-files=Dockerfile')).toEqual([
    { id: 'apt', target: '/var/cache/apt', keyFiles: ['Dockerfile'] }
  ])
  expect(parseMounts('id=c,target=/c,key-files=Cargo.lock; rust-toolchain.toml')[0]?.keyFiles).toEqual(['Cargo.lock', 'rust-toolchain.toml'])
  expect(parseMounts('[{"target":"/c","key-files":["a","b"]}]')[0]?.keyFiles).toEqual(['a', 'b'])
  expect(() => parseMounts('id=c,target=/c,key-files=;')).toThrow(/key-files is empty/)
})

test('exclude and max-size options', () => {
  expect(parseMounts('id=cargo,target=/usr/local/cargo,exclude=registry/src;git/checkouts,max-size=2G')).toEqual([
    { id: 'cargo', target: '/usr/local/cargo', exclude: ['registry/src', 'git/checkouts'], maxSize: 2 * 1024 ** 3 }
  ])
  expect(parseSize('500M', 'x', 'max-size')).toBe(500 * 1024 ** 2)
  expect(parseSize('1.5g', 'x', 'max-size')).toBe(1.5 * 1024 ** 3)
  expect(parseSize('1048576', 'x', 'max-size')).toBe(1048576)
  expect(() => parseMounts('id=c,target=/c,exclude=../etc')).toThrow(/relative to the mount root/)
  expect(() => parseMounts('id=c,target=/c,max-size=lots')).toThrow(/max-size must be a size/)
})
