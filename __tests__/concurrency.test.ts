import { expect, test } from '@jest/globals'

import { forEachLimit } from '../src/core/concurrency.js'

test('runs every item with at most `limit` in flight', async () => {
  let inFlight = 0
  let peak = 0
  const seen: number[] = []
  await forEachLimit([1, 2, 3, 4, 5, 6, 7], 3, async n => {
    inFlight++
    peak = Math.max(peak, inFlight)
    await new Promise(r => setTimeout(r, 5 * (n % 3)))
    seen.push(n)
    inFlight--
  })
  expect(seen.sort()).toEqual([1, 2, 3, 4, 5, 6, 7])
  expect(peak).toBe(3)
})
