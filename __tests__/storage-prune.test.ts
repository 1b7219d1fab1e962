// prune's selection: unused longer than --max-age, then least recently used
// until the rest fits --max-total; durations and ages as shown by ls.
import { describe, expect, test } from '@jest/globals'

import type { StoredEntry } from '../src/storage/managed.js'
import { formatAge, parseAge, selectPrunable } from '../src/storage/prune.js'

const DAY = 86_400_000
const NOW = 100 * DAY
const entry = (key: string, size: number, createdDaysAgo: number, usedDaysAgo = createdDaysAgo): StoredEntry => ({
  key,
  size,
  created: new Date(NOW - createdDaysAgo * DAY),
  lastUsed: new Date(NOW - usedDaysAgo * DAY)
})

describe('selectPrunable', () => {
  const entries = [entry('a', 100, 10), entry('b', 200, 8, 1), entry('c', 300, 3), entry('d', 400, 0.5), entry('e', 500, 0)]
  const keys = (list: StoredEntry[]): string[] => list.map(e => e.key)

  test('max-age goes by last use, not by the save time', () => {
    // b was saved 8 days ago but restored yesterday: it stays.
    expect(keys(selectPrunable(entries, { maxAgeMs: 7 * DAY }, NOW))).toEqual(['a'])
  })

  test('max-total keeps the most recently used that fit and removes everything older', () => {
    // Recency: e(0) d(0.5) b(1, used) c(3) a(10); e+d = 900 fits 1000, b would make 1100.
    expect(keys(selectPrunable(entries, { maxTotalBytes: 1000 }, NOW))).toEqual(['a', 'c', 'b'])
  })

  test('an older small entry is not kept in place of the newer that did not fit', () => {
    const list = [entry('new', 600, 0), entry('mid', 600, 1), entry('old', 10, 2)]
    expect(keys(selectPrunable(list, { maxTotalBytes: 700 }, NOW))).toEqual(['old', 'mid'])
  })

  test('both limits: age first, then size among the rest; least recently used first', () => {
    expect(keys(selectPrunable(entries, { maxAgeMs: 7 * DAY, maxTotalBytes: 1200 }, NOW))).toEqual(['a', 'c'])
  })

  test('nothing to do', () => {
    expect(selectPrunable(entries, {}, NOW)).toEqual([])
    expect(selectPrunable([], { maxAgeMs: 0, maxTotalBytes: 0 }, NOW)).toEqual([])
    expect(keys(selectPrunable(entries, { maxTotalBytes: 10_000 }, NOW))).toEqual([])
  })
})

describe('parseAge / formatAge', () => {
  test('durations', () => {
    expect(parseAge('7d')).toBe(7 * DAY)
    expect(parseAge('12h')).toBe(12 * 3_600_000)
    expect(parseAge('30m')).toBe(1_800_000)
    expect(parseAge('2w')).toBe(14 * DAY)
    expect(parseAge(' 90s ')).toBe(90_000)
    expect(parseAge('1.5d')).toBe(1.5 * DAY)
    for (const bad of ['', '7', 'd', '7 days', '-1d', '7y']) expect(parseAge(bad)).toBeUndefined()
  })

  test('ages', () => {
    expect(formatAge(40_000)).toBe('40 s')
    expect(formatAge(12 * 60_000)).toBe('12 min')
    expect(formatAge(5 * 3_600_000)).toBe('5 h')
    expect(formatAge(3 * DAY)).toBe('3 d')
    expect(formatAge(-5)).toBe('0 s')
  })
})
