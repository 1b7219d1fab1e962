import { runCommand } from '../builder/command.js'
import type { Services } from '../core/services.js'
import { openStore } from '../storage/select.js'

/** The real seams: processes through runCommand, entries in the store the `backend` input names. */
export function realServices(backend: string): Services {
  return { run: runCommand, cache: openStore(backend) }
}
