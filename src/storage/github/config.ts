/**
 * Where the GitHub Actions cache service v2 is, from the runner's
 * environment, with the cache library's rules: v2 only when
 * ACTIONS_CACHE_SERVICE_V2 is set and the server is not GitHub Enterprise
 * Server (GHES speaks v1 only), the Twirp API at ACTIONS_RESULTS_URL, the job's
 * ACTIONS_RUNTIME_TOKEN as a bearer token.
 */
export interface ServiceV2 {
  /** Base of the Twirp API (only its origin and path prefix matter). */
  baseUrl: URL
  token: string
}

/** The proxy settings the cache library's HTTP client follows; the stream client speaks to the service directly. */
const PROXY_VARIABLES = ['HTTPS_PROXY', 'https_proxy', 'HTTP_PROXY', 'http_proxy']

/**
 * The v2 service, or undefined where the stream client cannot run (v1, GHES,
 * missing settings, a proxy in the environment, whose rules the library
 * follows, or BUILDKIT_MOUNT_CACHE_GITHUB_CLIENT=library to keep the
 * cache library's path).
 */
export function serviceV2(env: NodeJS.ProcessEnv = process.env): ServiceV2 | undefined {
  if ((env.BUILDKIT_MOUNT_CACHE_GITHUB_CLIENT ?? '').trim().toLowerCase() === 'library') return undefined
  if (PROXY_VARIABLES.some(name => (env[name] ?? '').trim() !== '')) return undefined
  if (!env.ACTIONS_CACHE_SERVICE_V2) return undefined
  if (isGhes(env.GITHUB_SERVER_URL)) return undefined
  const results = env.ACTIONS_RESULTS_URL
  const token = env.ACTIONS_RUNTIME_TOKEN
  if (!results || !token) return undefined
  try {
    return { baseUrl: new URL(results), token }
  } catch {
    return undefined
  }
}

/** github.com, *.ghe.com and *.localhost are GitHub's cloud; any other server is GHES. */
export function isGhes(serverUrl: string | undefined): boolean {
  let host: string
  try {
    host = new URL(serverUrl || 'https://github.com').hostname.toLowerCase()
  } catch {
    return true
  }
  return !(host === 'github.com' || host.endsWith('.ghe.com') || host.endsWith('.localhost'))
}
