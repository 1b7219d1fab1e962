import { createHash } from 'node:crypto'
import { homedir } from 'node:os'
import { join, resolve } from 'node:path'

/**
 * Where restore leaves its state for save when --state is not given: outside
 * the working directory, which is usually the build context (a file there
 * would invalidate every `COPY . .` layer). The directory is the job's
 * RUNNER_TEMP when set, else $XDG_STATE_HOME/buildkit-mount-cache (default
 * ~/.local/state); the name is derived from what restore and save of one job
 * share, the key prefix and the working directory, so two projects (or two
 * checkouts) on one machine never read each other's state.
 */
export function defaultStatePath(env: NodeJS.ProcessEnv, cwd: string, keyPrefix: string): string {
  const dir = env.RUNNER_TEMP
    ? env.RUNNER_TEMP
    : join(env.XDG_STATE_HOME ? env.XDG_STATE_HOME : join(homedir(), '.local', 'state'), 'buildkit-mount-cache')
  const tag = createHash('sha256')
    .update(`${keyPrefix.trim()}\0${resolve(cwd)}`)
    .digest('hex')
    .slice(0, 16)
  return join(dir, `buildkit-mount-cache-state-${tag}.json`)
}
