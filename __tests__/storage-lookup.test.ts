// Restore lookup semantics shared by the local-dir and S3 stores: GitHub's
// restore-keys rules (exact key, primary key as prefix, then each restore key
// as prefix; newest within each step).
import { describe, expect, test } from '@jest/globals'

import { findEntry, matchEntry, newest, type Candidate } from '../src/storage/lookup.js'

const at = (key: string, seconds: number): Candidate => ({ key, created: new Date(seconds * 1000) })

const entries = [
  at('p-npm-linux-amd64-aaa-d1', 100),
  at('p-npm-linux-amd64-aaa-d2', 300),
  at('p-npm-linux-amd64-bbb-d3', 500),
  at('p-npm-linux-amd64-aaa', 50),
  at('p-npm-cache-linux-amd64-aaa-d9', 900)
]
const base = 'p-npm-linux-amd64-aaa'
const restoreKeys = [`${base}-`, 'p-npm-linux-amd64-']

describe('matchEntry', () => {
  test('an exact key wins over newer prefix matches', () => {
    expect(matchEntry(entries, base, restoreKeys)?.key).toBe('p-npm-linux-amd64-aaa')
  })

  test('then the newest entry with the primary key as prefix', () => {
    const noExact = entries.filter(e => e.key !== base)
    expect(matchEntry(noExact, base, restoreKeys)?.key).toBe('p-npm-linux-amd64-aaa-d2')
  })

  test('then each restore key in order, newest first within it', () => {
    const otherFiles = entries.filter(e => !e.key.startsWith(base))
    expect(matchEntry(otherFiles, base, restoreKeys)?.key).toBe('p-npm-linux-amd64-bbb-d3')
  })

  test('restore keys are tried in order, not newest overall', () => {
    const list = [at('k-a-old', 1), at('k-b-new', 99)]
    expect(matchEntry(list, 'k-x', ['k-a-', 'k-b-'])?.key).toBe('k-a-old')
  })

  test('a prefix does not match across another mount whose id extends this one', () => {
    const list = [at('p-npm-cache-linux-amd64-aaa-d9', 900)]
    expect(matchEntry(list, base, restoreKeys)).toBeUndefined()
  })

  test('a miss, and empty restore keys never match everything', () => {
    expect(matchEntry(entries, 'q-zzz', [])).toBeUndefined()
    expect(matchEntry(entries, 'q-zzz', [''])).toBeUndefined()
  })
})

describe('newest', () => {
  test('equal creation times are broken by key, so every process agrees', () => {
    expect(newest([at('b', 5), at('c', 5), at('a', 5)])?.key).toBe('c')
    expect(newest([])).toBeUndefined()
  })
})

describe('findEntry (remote listing)', () => {
  const source = (list: Candidate[]) => {
    const calls: string[] = []
    return {
      calls,
      exact: async (key: string) => {
        calls.push(`exact ${key}`)
        return list.find(e => e.key === key)
      },
      // A listing may return more than asked for; the lookup filters again.
      list: async (prefix: string) => {
        calls.push(`list ${prefix}`)
        return list
      }
    }
  }

  test('the same answers as matchEntry, for every step', async () => {
    for (const list of [entries, entries.filter(e => e.key !== base), entries.filter(e => !e.key.startsWith(base)), []]) {
      expect((await findEntry(source(list), base, restoreKeys))?.key).toBe(matchEntry(list, base, restoreKeys)?.key)
    }
  })

  test('stops at the first step that matches', async () => {
    const s = source(entries.filter(e => e.key !== base))
    await findEntry(s, base, restoreKeys)
    expect(s.calls).toEqual([`exact ${base}`, `list ${base}`])
  })
})
