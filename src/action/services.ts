import { runCommand } from '../builder/command.js'
import type { Services } from '../core/services.js'
import { openStore } from '../storage/select.js'

/**
 * The real seams: processes through runCommand, entries in the store the
 * `backend` input names; `githubToken` (the github-token input) lets the
 * GitHub cache delete entries.
 */
export function realServices(backend: string, githubToken?: string): Services {
  return { run: runCommand, cache: openStore(backend, githubToken !== undefined ? { githubToken } : {}) }
}
