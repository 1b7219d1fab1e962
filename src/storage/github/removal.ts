import type { EntryRemoval } from '../store.js'
import { GitHubRestClient, PERMISSION_HINT, restTarget, type RestOptions } from './rest.js'

/**
 * Removal of GitHub cache entries through the REST API, scoped to the job's
 * ref (GITHUB_REF) when the runner sets it: a job deletes entries of its own
 * branch only, never another branch's that share a key prefix. Without a
 * token every call fails with an error naming the input that gives one.
 * Nothing is contacted before the first call.
 */
export function githubRemoval(token: string | undefined, env: NodeJS.ProcessEnv = process.env, options: RestOptions = {}): EntryRemoval {
  const ref = (env.GITHUB_REF ?? '').trim() || undefined
  let client: GitHubRestClient | undefined
  const rest = (): GitHubRestClient => {
    if (token === undefined || token === '') throw new Error(`deleting GitHub cache entries needs a token: ${PERMISSION_HINT}`)
    return (client ??= new GitHubRestClient(restTarget(token, env), options))
  }
  return {
    keys: async prefix => {
      const listed = await rest().listCaches({ key: prefix, ...(ref !== undefined ? { ref } : {}) })
      // The API's key filter is a prefix too; checked again so that nothing else can ever be deleted.
      return [...new Set(listed.map(c => c.key).filter(k => k.startsWith(prefix)))]
    },
    delete: async key => {
      await rest().deleteCachesByKey(key, ref)
    }
  }
}
