// Unit tests for the pure pieces of the test cache service
// (test-support/cache-service): key matching, Azure block list / range parsing,
// blob URL signatures, fault matching and the env helpers.
import { describe, expect, test } from '@jest/globals'
import { applyEnv, cacheClientEnv, formatEnv, githubApiEnv, parseEnvLines } from '../test-support/cache-service/env.js'
import {
  blockIdToHex,
  faultMatches,
  Faults,
  findEntry,
  parseBlockList,
  parseRange,
  signBlob,
  validateFaultSpec,
  verifyBlobSignature,
  type MatchCandidate
} from '../test-support/cache-service/server.js'

describe('findEntry (GitHub key matching)', () => {
  let id = 0
  const e = (key: string, createdAt: number, version = 'v1'): MatchCandidate => ({ id: ++id, key, version, createdAt })
  const entries = [
    e('deps-linux-aaa', 100),
    e('deps-linux-bbb', 200),
    e('deps-linux-aaa-extra', 300),
    e('deps-mac-ccc', 50),
    e('deps-linux-zzz', 999, 'other-version')
  ]
  const find = (primary: string, restore: string[] = [], version = 'v1'): string | undefined => findEntry(entries, primary, restore, version)?.key

  test('exact primary key wins over newer prefix matches', () => {
    expect(find('deps-linux-aaa', ['deps-linux-'])).toBe('deps-linux-aaa')
  })
  test('primary key is also tried as a prefix (newest wins) before restore keys', () => {
    expect(find('deps-linux-', ['deps-mac-'])).toBe('deps-linux-aaa-extra')
  })
  test('restore keys are prefixes, newest match wins', () => {
    expect(find('deps-linux-nope', ['deps-linux-'])).toBe('deps-linux-aaa-extra')
    expect(find('deps-linux-nope', ['deps-linux-b'])).toBe('deps-linux-bbb')
  })
  test('restore keys are tried in order: first matching key wins even if older', () => {
    expect(find('nope', ['deps-mac-', 'deps-linux-'])).toBe('deps-mac-ccc')
    expect(find('nope', ['absent-', 'deps-mac-'])).toBe('deps-mac-ccc')
  })
  test('matching is scoped by version', () => {
    expect(find('deps-linux-zzz')).toBeUndefined()
    expect(find('deps-linux-zzz', [], 'other-version')).toBe('deps-linux-zzz')
    expect(find('deps-', [], 'no-such-version')).toBeUndefined()
  })
  test('miss', () => {
    expect(find('nope', ['nah-'])).toBeUndefined()
  })
  test('same createdAt: the later id is newer', () => {
    const tie = [
      { id: 1, key: 'k-1', version: 'v', createdAt: 5 },
      { id: 2, key: 'k-2', version: 'v', createdAt: 5 }
    ]
    expect(findEntry(tie, 'k-', [], 'v')?.id).toBe(2)
  })
})

describe('Azure helpers', () => {
  test('parseBlockList keeps order and kinds', () => {
    const xml =
      '<?xml version="1.0" encoding="UTF-8" standalone="yes"?><BlockList>' +
      '<Latest>QUFB</Latest><Uncommitted>QkJC</Uncommitted><Committed>Q0ND</Committed></BlockList>'
    expect(parseBlockList(xml)).toEqual([
      { kind: 'Latest', id: 'QUFB' },
      { kind: 'Uncommitted', id: 'QkJC' },
      { kind: 'Committed', id: 'Q0ND' }
    ])
    expect(parseBlockList('<BlockList></BlockList>')).toEqual([])
    expect(() => parseBlockList('<Nope/>')).toThrow('not a BlockList')
  })

  test('blockIdToHex accepts base64 of 1..64 bytes only', () => {
    expect(blockIdToHex(Buffer.from('block-0').toString('base64'))).toBe(Buffer.from('block-0').toString('hex'))
    expect(blockIdToHex(Buffer.alloc(64, 1).toString('base64'))).toBe('01'.repeat(64))
    expect(blockIdToHex(Buffer.alloc(65, 1).toString('base64'))).toBeUndefined()
    expect(blockIdToHex('../etc')).toBeUndefined()
    expect(blockIdToHex('')).toBeUndefined()
    expect(blockIdToHex('abc')).toBeUndefined() // not a multiple of 4
  })

  test('parseRange', () => {
    expect(parseRange(undefined, 10)).toBeUndefined()
    expect(parseRange('bytes=0-3', 10)).toEqual({ start: 0, end: 3 })
    expect(parseRange('bytes=4-', 10)).toEqual({ start: 4, end: 9 })
    expect(parseRange('bytes=5-100', 10)).toEqual({ start: 5, end: 9 })
    expect(parseRange('bytes=-3', 10)).toEqual({ start: 7, end: 9 })
    expect(parseRange('bytes=-30', 10)).toEqual({ start: 0, end: 9 })
    expect(parseRange('bytes=10-', 10)).toBe('unsatisfiable')
    expect(parseRange('bytes=5-2', 10)).toBe('unsatisfiable')
    expect(parseRange('bytes=0-1,4-5', 10)).toBeUndefined() // multi-range: serve everything
  })

  test('blob signatures bind blob id, permission and expiry', () => {
    const secret = Buffer.from('s3cret')
    const se = '2099-01-01T00:00:00Z'
    const q = (sp: string, sig: string, expiry = se): URLSearchParams => new URLSearchParams({ sp, se: expiry, sig })
    const now = Date.parse('2030-01-01T00:00:00Z')
    const sigR = signBlob(secret, 'blob1', 'r', se)
    expect(verifyBlobSignature(secret, 'blob1', q('r', sigR), 'r', now)).toBeUndefined()
    expect(verifyBlobSignature(secret, 'blob2', q('r', sigR), 'r', now)?.code).toBe('AuthenticationFailed')
    expect(verifyBlobSignature(secret, 'blob1', q('cw', sigR), 'w', now)?.code).toBe('AuthenticationFailed')
    expect(verifyBlobSignature(secret, 'blob1', q('r', sigR), 'w', now)?.code).toBe('AuthorizationPermissionMismatch')
    expect(verifyBlobSignature(Buffer.from('other'), 'blob1', q('r', sigR), 'r', now)?.code).toBe('AuthenticationFailed')
    expect(verifyBlobSignature(secret, 'blob1', new URLSearchParams(), 'r', now)?.code).toBe('AuthenticationFailed')
    const old = '2000-01-01T00:00:00Z'
    expect(verifyBlobSignature(secret, 'blob1', q('r', signBlob(secret, 'blob1', 'r', old), old), 'r', now)?.message).toMatch(/expiry/)
    const sigW = signBlob(secret, 'blob1', 'cw', se)
    expect(verifyBlobSignature(secret, 'blob1', q('cw', sigW), 'w', now)).toBeUndefined()
  })
})

describe('faults', () => {
  test('op groups, key filter, wildcard', () => {
    const f = { action: { status: 500 } }
    expect(faultMatches({ ...f, match: { op: 'blob-upload' } }, 'PutBlock', undefined)).toBe(true)
    expect(faultMatches({ ...f, match: { op: 'blob-upload' } }, 'GetBlob', undefined)).toBe(false)
    expect(faultMatches({ ...f, match: { op: 'blob-download' } }, 'GetBlobProperties', 'k')).toBe(true)
    expect(faultMatches({ ...f, match: { op: ['CreateCacheEntry', 'PutBlob'] } }, 'PutBlob', 'k')).toBe(true)
    expect(faultMatches({ ...f, match: { op: 'CreateCacheEntry', key: 'a' } }, 'CreateCacheEntry', 'b')).toBe(false)
    expect(faultMatches({ ...f, match: { op: 'CreateCacheEntry', key: 'a' } }, 'CreateCacheEntry', 'a')).toBe(true)
    expect(faultMatches({ ...f, match: { op: '*' } }, 'v1.UploadChunk', undefined)).toBe(true)
    expect(faultMatches({ ...f, match: { op: 'rest' } }, 'rest.DeleteCachesByKey', 'k')).toBe(true)
    expect(faultMatches({ ...f, match: { op: 'rest' } }, 'GetCacheEntryDownloadURL', 'k')).toBe(false)
  })

  test('times limits hits, first added fault wins, clear/remove', () => {
    const faults = new Faults()
    const a = faults.add({ match: { op: 'GetBlob' }, action: { status: 500 }, times: 2 })
    const b = faults.add({ match: { op: 'GetBlob' }, action: { delayMs: 5 } })
    expect(faults.take('GetBlob', 'k')?.id).toBe(a)
    expect(faults.take('GetBlob', 'k')?.id).toBe(a)
    expect(faults.take('GetBlob', 'k')?.id).toBe(b) // a is used up
    expect(faults.take('GetBlob', 'k')?.id).toBe(b) // unlimited
    expect(faults.list()).toEqual([expect.objectContaining({ id: b, hits: 2, remaining: null })])
    expect(faults.take('PutBlob', 'k')).toBeUndefined()
    expect(faults.remove(b)).toBe(true)
    expect(faults.take('GetBlob', 'k')).toBeUndefined()
    faults.add({ match: { op: '*' }, action: { refuse: true } })
    faults.clear()
    expect(faults.list()).toEqual([])
  })

  test('validateFaultSpec rejects malformed specs', () => {
    expect(() => validateFaultSpec(null)).toThrow('invalid fault')
    expect(() => validateFaultSpec({ match: { op: 'Nope' }, action: { status: 500 } })).toThrow('unknown match.op')
    expect(() => validateFaultSpec({ match: { op: 'GetBlob' }, action: {} })).toThrow('action needs')
    expect(() => validateFaultSpec({ match: { op: 'GetBlob' }, action: { status: 500, refuse: true } })).toThrow('at most one')
    expect(() => validateFaultSpec({ match: { op: 'GetBlob' }, action: { status: 99 } })).toThrow('HTTP status')
    expect(() => validateFaultSpec({ match: { op: 'GetBlob' }, action: { delayMs: -1 } })).toThrow('delayMs')
    expect(() => validateFaultSpec({ match: { op: 'GetBlob' }, action: { status: 500 }, times: 0 })).toThrow('times')
    const ok = { match: { op: ['blob-download', 'GetCacheEntryDownloadURL'], key: 'k' }, action: { delayMs: 10, resetAfterBytes: 0 }, times: 1 }
    expect(validateFaultSpec(ok)).toBe(ok)
  })
})

describe('env helpers', () => {
  test('cacheClientEnv for v2 and v1', () => {
    expect(cacheClientEnv('http://127.0.0.1:1234', 'tok')).toEqual({
      ACTIONS_CACHE_SERVICE_V2: 'true',
      ACTIONS_RESULTS_URL: 'http://127.0.0.1:1234/',
      ACTIONS_CACHE_URL: 'http://127.0.0.1:1234/',
      ACTIONS_RUNTIME_TOKEN: 'tok',
      GITHUB_SERVER_URL: 'https://github.com'
    })
    expect(cacheClientEnv('http://127.0.0.1:1234/', 'tok', 'v1').ACTIONS_CACHE_SERVICE_V2).toBe('')
  })

  test('githubApiEnv: the API URL as GitHub gives it (no trailing slash), the repository and the ref', () => {
    expect(githubApiEnv('http://127.0.0.1:1234/', 'octo/app', 'refs/heads/main')).toEqual({
      GITHUB_API_URL: 'http://127.0.0.1:1234',
      GITHUB_REPOSITORY: 'octo/app',
      GITHUB_REF: 'refs/heads/main'
    })
  })

  test('applyEnv sets, deletes and restores', () => {
    const target: NodeJS.ProcessEnv = { KEEP: 'k', CHANGE: 'old', DROP: 'd' }
    const restore = applyEnv({ CHANGE: 'new', ADD: 'a', DROP: undefined }, target)
    expect(target).toEqual({ KEEP: 'k', CHANGE: 'new', ADD: 'a' })
    restore()
    expect(target).toEqual({ KEEP: 'k', CHANGE: 'old', DROP: 'd' })
  })

  test('formatEnv / parseEnvLines round trip', () => {
    const vars = { A: '1', B: 'http://x/?a=b', C: '' }
    expect(formatEnv(vars)).toBe('A=1\nB=http://x/?a=b\nC=\n')
    expect(parseEnvLines(formatEnv(vars))).toEqual(vars)
    expect(JSON.parse(formatEnv(vars, 'json'))).toEqual(vars)
  })
})
