// One save or restore of the cache-client bench (cache-clients.ts), in a
// process of its own so that its peak RSS is its own:
//   cache-client-op.ts save|restore library|stream ARCHIVE KEY
// The cache service settings come from the environment. Prints `seconds N`.
import { performance } from 'node:perf_hooks'

import { actionsCache } from '../../src/storage/actions-cache.js'
import { serviceV2 } from '../../src/storage/github/config.js'
import { GitHubStreamStore } from '../../src/storage/github/stream-store.js'
import type { CacheStore } from '../../src/storage/store.js'

async function main(): Promise<void> {
  const [op, client, archive, key] = process.argv.slice(2)
  if ((op !== 'save' && op !== 'restore') || (client !== 'library' && client !== 'stream') || !archive || !key) {
    throw new Error('usage: cache-client-op.ts save|restore library|stream ARCHIVE KEY')
  }
  let store: CacheStore = actionsCache
  if (client === 'stream') {
    const service = serviceV2()
    if (!service) throw new Error('no cache service v2 in the environment')
    store = new GitHubStreamStore(service)
  }
  const started = performance.now()
  if (op === 'save') {
    if (!(await store.save(archive, key))) throw new Error(`${key} was not saved`)
  } else if ((await store.restore(archive, key, [])) !== key) throw new Error(`${key} was not restored`)
  console.log(`seconds ${((performance.now() - started) / 1000).toFixed(3)}`)
}

main().catch((error: unknown) => {
  console.error(error)
  process.exit(1)
})
