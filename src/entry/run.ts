import * as core from '@actions/core'

/**
 * Runs one phase and exits. `failJob` decides whether an error fails the
 * step (main: bad input) or only warns (post: saving is best effort). The
 * explicit exit matters: the cache client's HTTP agents can keep the event
 * loop alive after the work is done.
 */
export function runEntry(phase: () => Promise<unknown>, failJob: boolean): void {
  phase()
    .catch((error: unknown) => {
      const message = error instanceof Error ? error.message : String(error)
      if (failJob) core.setFailed(message)
      else core.warning(`Saving cache mounts failed: ${message}`)
      if (error instanceof Error && error.stack) core.debug(error.stack)
    })
    .finally(() => process.exit())
}
