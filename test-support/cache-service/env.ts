// Environment variables that point the unmodified @actions/cache client at a
// cache service (see node_modules/@actions/cache/lib/internal/config.js):
//
// - ACTIONS_CACHE_SERVICE_V2: any non-empty value selects service v2 (Twirp +
//   signed blob URLs); empty/unset selects v1 (the GHES REST API).
// - ACTIONS_RESULTS_URL: base URL of the v2 Twirp API (`/twirp/...` is resolved
//   against it, so only its origin matters).
// - ACTIONS_CACHE_URL: base URL of the v1 API; the client appends
//   `_apis/artifactcache/...` by plain string concatenation, so it MUST end
//   with a slash. v1 falls back to ACTIONS_RESULTS_URL when this is unset.
// - ACTIONS_RUNTIME_TOKEN: sent as `Authorization: Bearer <token>` on Twirp and
//   v1 calls (never on blob URLs, which carry their own signature).
// - GITHUB_SERVER_URL: isGhes() treats any host other than github.com,
//   *.ghe.com and *.localhost as GHES and then forces v1, so it is pinned to
//   https://github.com (its default when unset) to keep v2 selectable on any
//   runner.
//
// githubApiEnv() adds what GitHub's REST API for caches needs (rest.ts), as a
// runner sets it: GITHUB_API_URL (no trailing slash, like
// https://api.github.com), GITHUB_REPOSITORY (owner/name) and GITHUB_REF (the
// job's ref, which scopes deletions). Its token is not an environment
// variable on a runner (the action's github-token input, `${{ github.token }}`):
// CacheService.githubToken.
//
// Not service settings, so deliberately not set here: RUNNER_TEMP (archive
// temp dir; without it the client uses /home/actions/temp), GITHUB_WORKSPACE
// (tar root) and ACTIONS_CACHE_MODE (read/write policy; unset = permissive).

export type CacheServiceVersion = 'v1' | 'v2'

export type CacheClientEnv = {
  ACTIONS_CACHE_SERVICE_V2: string
  ACTIONS_RESULTS_URL: string
  ACTIONS_CACHE_URL: string
  ACTIONS_RUNTIME_TOKEN: string
  GITHUB_SERVER_URL: string
}

/** The env vars the @actions/cache client needs to talk to the service at `url`. */
export function cacheClientEnv(url: string, token: string, version: CacheServiceVersion = 'v2'): CacheClientEnv {
  const base = url.endsWith('/') ? url : `${url}/`
  return {
    // '' rather than absent so that applying the v1 env also switches off a
    // v2 flag inherited from the surrounding environment.
    ACTIONS_CACHE_SERVICE_V2: version === 'v2' ? 'true' : '',
    ACTIONS_RESULTS_URL: base,
    ACTIONS_CACHE_URL: base,
    ACTIONS_RUNTIME_TOKEN: token,
    GITHUB_SERVER_URL: 'https://github.com'
  }
}

export type GitHubApiEnv = {
  GITHUB_API_URL: string
  GITHUB_REPOSITORY: string
  GITHUB_REF: string
}

/** Everything CacheService.env() sets: the cache client's variables and the REST API's. */
export type ServiceEnv = CacheClientEnv & GitHubApiEnv

/** The env vars that point a REST client at the service's API at `url`, for `repository` and the jobs' `ref`. */
export function githubApiEnv(url: string, repository: string, ref: string): GitHubApiEnv {
  return { GITHUB_API_URL: url.replace(/\/+$/, ''), GITHUB_REPOSITORY: repository, GITHUB_REF: ref }
}

/**
 * Sets `vars` on `target` (process.env by default; an undefined value deletes
 * the variable) and returns a function that restores the previous values.
 */
export function applyEnv(vars: Readonly<Record<string, string | undefined>>, target: NodeJS.ProcessEnv = process.env): () => void {
  const previous = new Map<string, string | undefined>()
  for (const [name, value] of Object.entries(vars)) {
    if (!previous.has(name)) previous.set(name, target[name])
    if (value === undefined) delete target[name]
    else target[name] = value
  }
  return () => {
    for (const [name, value] of previous) {
      if (value === undefined) delete target[name]
      else target[name] = value
    }
  }
}

/** `KEY=VALUE` lines (what $GITHUB_ENV accepts) or a JSON object. */
export function formatEnv(vars: Readonly<Record<string, string>>, format: 'lines' | 'json' = 'lines'): string {
  if (format === 'json') return `${JSON.stringify(vars)}\n`
  return Object.entries(vars)
    .map(([name, value]) => `${name}=${value}\n`)
    .join('')
}

/** Inverse of formatEnv('lines'); ignores blank lines and lines without '='. */
export function parseEnvLines(text: string): Record<string, string> {
  const vars: Record<string, string> = {}
  for (const line of text.split(/\r?\n/)) {
    const eq = line.indexOf('=')
    if (eq > 0) vars[line.slice(0, eq)] = line.slice(eq + 1)
  }
  return vars
}
