/**
 * Runs `fn` over `items` with at most `limit` calls in flight: transfers of
 * several mounts overlap, without opening one connection per mount at once.
 */
export async function forEachLimit<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const item = items[next++] as T
      await fn(item)
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker))
}

/** Parallel cache transfers per step. */
export const TRANSFER_CONCURRENCY = 3
